//! Operator frequency bands and their edges (IEGC defaults).

/// Operator frequency band (IEGC defaults in [`BandEdges::default`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Band {
    CriticalLow,
    Low,
    Normal,
    High,
    CriticalHigh,
}

impl Band {
    /// Short stable name ("critical_low", "low", "normal", "high", "critical_high").
    pub fn name(self) -> &'static str {
        match self {
            Self::CriticalLow => "critical_low",
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
            Self::CriticalHigh => "critical_high",
        }
    }
}

/// Band edges in Hz: critical low < `critical_low` <= low < `low` <= normal <= `high`
/// < high <= `critical_high` < critical high.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandEdges {
    pub critical_low: f64,
    pub low: f64,
    pub high: f64,
    pub critical_high: f64,
}

impl Default for BandEdges {
    /// IEGC operator bands around 50.000 Hz: 49.50 / 49.90 / 50.05 / 50.50.
    fn default() -> Self {
        Self {
            critical_low: 49.50,
            low: 49.90,
            high: 50.05,
            critical_high: 50.50,
        }
    }
}

impl BandEdges {
    /// The band `f` lies in, with no hysteresis. `f` must be finite.
    pub fn classify(&self, f: f64) -> Band {
        if f < self.critical_low {
            Band::CriticalLow
        } else if f < self.low {
            Band::Low
        } else if f <= self.high {
            Band::Normal
        } else if f <= self.critical_high {
            Band::High
        } else {
            Band::CriticalHigh
        }
    }
}
