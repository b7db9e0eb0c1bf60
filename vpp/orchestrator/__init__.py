"""The orchestrator processes and their pure logic (fleet state, dispatch)."""
