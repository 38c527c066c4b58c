//! `println!` and `print!` for what the commands print, minus the panic when the reader has
//! gone (`incubator run ... | head -3`): a training run must not end in a panic's trace at its
//! last line because nobody reads it any more. Other write errors still panic, as `println!`'s.
//! (Commands that only print restore SIGPIPE instead and stop at once: see `cli::prints_only`.)

/// Where a failed write to stdout goes: nowhere when the pipe is closed.
pub fn written(result: std::io::Result<()>) {
    if let Err(e) = result {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            panic!("failed printing to stdout: {e}");
        }
    }
}

macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        $crate::stdout::written(writeln!(std::io::stdout().lock(), $($arg)*))
    }};
}

macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        $crate::stdout::written(write!(std::io::stdout().lock(), $($arg)*))
    }};
}
