//! The serial line of a Modbus RTU target: its settings, and opening the tty raw and
//! non-blocking with libc (done by the connector thread, so an open that hangs on a
//! misbehaving driver never stalls the loop).

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};

use crate::error::ConfigError;

/// Parity of the line's characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

impl Parity {
    /// "N", "E" or "O", as the driver's configuration spells it.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "N" => Self::None,
            "E" => Self::Even,
            "O" => Self::Odd,
            _ => return None,
        })
    }
}

/// How the line is set up (the tty path is the target's `address`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SerialSpec {
    pub baudrate: u32,
    pub parity: Parity,
    /// 1 or 2.
    pub stopbits: u8,
    /// 7 or 8.
    pub bytesize: u8,
}

impl SerialSpec {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if speed(self.baudrate).is_none() {
            return Err(ConfigError::new(
                "baudrate",
                format!("{} is not a rate the tty driver knows", self.baudrate),
            ));
        }
        if !matches!(self.stopbits, 1 | 2) {
            return Err(ConfigError::new("stopbits", "must be 1 or 2"));
        }
        if !matches!(self.bytesize, 7 | 8) {
            return Err(ConfigError::new("bytesize", "must be 7 or 8"));
        }
        Ok(())
    }

    /// Seconds a character takes on the line.
    pub fn char_time_s(&self) -> f64 {
        super::rtu::char_time_s(
            self.baudrate,
            self.bytesize,
            self.parity != Parity::None,
            self.stopbits,
        )
    }
}

/// The termios speed constant of `baud` (only the standard rates: a custom one would
/// need termios2, and no Modbus device asks for one).
fn speed(baud: u32) -> Option<libc::speed_t> {
    Some(match baud {
        300 => libc::B300,
        600 => libc::B600,
        1200 => libc::B1200,
        2400 => libc::B2400,
        4800 => libc::B4800,
        9600 => libc::B9600,
        19_200 => libc::B19200,
        38_400 => libc::B38400,
        57_600 => libc::B57600,
        115_200 => libc::B115200,
        230_400 => libc::B230400,
        460_800 => libc::B460800,
        500_000 => libc::B500000,
        576_000 => libc::B576000,
        921_600 => libc::B921600,
        1_000_000 => libc::B1000000,
        1_152_000 => libc::B1152000,
        1_500_000 => libc::B1500000,
        2_000_000 => libc::B2000000,
        2_500_000 => libc::B2500000,
        3_000_000 => libc::B3000000,
        3_500_000 => libc::B3500000,
        4_000_000 => libc::B4000000,
        _ => return None,
    })
}

fn os_err(path: &str, what: &str) -> String {
    format!("{path}: {what}: {}", std::io::Error::last_os_error())
}

/// Open `path` raw at `spec`'s settings, non-blocking, with CLOCAL (no modem lines) and
/// VMIN 1 (so that a read with nothing there is EAGAIN, and 0 means the line hung up).
pub fn open(path: &str, spec: &SerialSpec) -> Result<File, String> {
    let c = CString::new(path).map_err(|_| format!("{path:?}: NUL in the path"))?;
    let baud = speed(spec.baudrate).ok_or_else(|| format!("{path}: unsupported baud rate"))?;
    // SAFETY: a valid C string; the flags only.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(os_err(path, "open"));
    }
    // SAFETY: fd was just opened and is owned by nobody else; the File closes it.
    let file = unsafe { File::from_raw_fd(fd) };
    // SAFETY: termios is plain data, filled by tcgetattr before any use.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open; t is a valid termios.
    unsafe {
        if libc::tcgetattr(fd, &mut t) != 0 {
            return Err(os_err(path, "not a tty"));
        }
        libc::cfmakeraw(&mut t);
    }
    t.c_cflag &= !(libc::CSIZE | libc::PARENB | libc::PARODD | libc::CSTOPB | libc::CRTSCTS);
    t.c_cflag |= libc::CLOCAL | libc::CREAD;
    t.c_cflag |= if spec.bytesize == 7 {
        libc::CS7
    } else {
        libc::CS8
    };
    t.c_iflag &= !(libc::IXON | libc::IXOFF | libc::IXANY | libc::INPCK | libc::ISTRIP);
    match spec.parity {
        Parity::None => {}
        Parity::Even => {
            t.c_cflag |= libc::PARENB;
            t.c_iflag |= libc::INPCK;
        }
        Parity::Odd => {
            t.c_cflag |= libc::PARENB | libc::PARODD;
            t.c_iflag |= libc::INPCK;
        }
    }
    if spec.stopbits == 2 {
        t.c_cflag |= libc::CSTOPB;
    }
    t.c_cc[libc::VMIN] = 1;
    t.c_cc[libc::VTIME] = 0;
    // SAFETY: fd is open; t is a valid termios.
    unsafe {
        if libc::cfsetispeed(&mut t, baud) != 0 || libc::cfsetospeed(&mut t, baud) != 0 {
            return Err(os_err(path, "speed"));
        }
        if libc::tcsetattr(fd, libc::TCSANOW, &t) != 0 {
            return Err(os_err(path, "tcsetattr"));
        }
        // Whatever was on the line before we owned it is no reply of ours.
        libc::tcflush(fd, libc::TCIOFLUSH);
    }
    Ok(file)
}

/// Throw away what the line holds both ways (after a timeout or a bad reply: a late or
/// broken answer must not be taken for the next one's).
pub fn flush(file: &File) {
    // SAFETY: the file's descriptor is open while it is borrowed.
    unsafe { libc::tcflush(file.as_raw_fd(), libc::TCIOFLUSH) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_and_opens_a_pty() {
        let ok = SerialSpec {
            baudrate: 19_200,
            parity: Parity::None,
            stopbits: 1,
            bytesize: 8,
        };
        assert!(ok.validate().is_ok());
        assert!(SerialSpec {
            baudrate: 14_400,
            ..ok
        }
        .validate()
        .is_err());
        assert!(SerialSpec { stopbits: 3, ..ok }.validate().is_err());
        assert!(open("/nonexistent/tty", &ok).is_err());
        assert!(open("/dev/null", &ok).unwrap_err().contains("not a tty"));
        // A pty's slave is a real tty: opened and set up like a serial port.
        let (mut master, mut slave) = (0, 0);
        // SAFETY: out-pointers to two ints; no name, termios or window size asked.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0);
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: a buffer of the given length.
        assert_eq!(
            unsafe { libc::ttyname_r(slave, name.as_mut_ptr(), name.len()) },
            0
        );
        // SAFETY: ttyname_r wrote a NUL-terminated string.
        let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
        let f = open(path.to_str().unwrap(), &ok).unwrap();
        flush(&f);
        // SAFETY: both descriptors are ours.
        unsafe {
            libc::close(master);
            libc::close(slave);
        }
    }
}
