//! Asking for a passphrase as OpenSSH does: on the terminal (`/dev/tty`) with echo off
//! (termios, through nix), or through the program named by `SSH_ASKPASS` for scripts
//! and desktops, chosen by `SSH_ASKPASS_REQUIRE` (`never`, `prefer`, `force`) and
//! `DISPLAY` exactly as ssh's `read_passphrase` chooses. Every passphrase is held in a
//! `Zeroizing` buffer.

use std::io::{self, Read};
use std::process::{Command, Stdio};

use noise_echo::openssh::keyfile::{PassphraseAnswer, PassphraseRequest};
use zeroize::Zeroizing;

/// An askpass program prints one line; anything much longer is not a passphrase, and
/// reading it whole would only cost memory.
const MAX_ASKPASS_OUTPUT: u64 = 8 * 1024;

/// The controlling terminal, which ssh prompts on even when stdin is a pipe.
const TERMINAL: &str = "/dev/tty";

/// Where a passphrase is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// The controlling terminal, with echo off.
    Terminal,
    /// This askpass program, given the prompt as its argument.
    Askpass(String),
}

/// What the environment says about askpass, read once so the choice is testable.
#[derive(Debug, Default)]
struct Environment {
    /// `SSH_ASKPASS`: the program, if set and not empty.
    askpass: Option<String>,
    /// `SSH_ASKPASS_REQUIRE`: `never`, `prefer` or `force` (others are ignored, as ssh).
    require: Option<String>,
    /// Whether `DISPLAY` or `WAYLAND_DISPLAY` is set: ssh only runs askpass on a desktop
    /// unless forced.
    has_display: bool,
    /// Whether the controlling terminal can be opened.
    has_terminal: bool,
}

impl Environment {
    fn current() -> Self {
        let set = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        Self {
            askpass: set("SSH_ASKPASS"),
            require: set("SSH_ASKPASS_REQUIRE"),
            has_display: set("DISPLAY").is_some() || set("WAYLAND_DISPLAY").is_some(),
            has_terminal: std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(TERMINAL)
                .is_ok(),
        }
    }

    /// ssh's rule: askpass is allowed on a desktop, used when preferred there or when
    /// there is no terminal, always with `force`, never with `never`.
    fn source(&self) -> Result<Source, String> {
        let mut allow_askpass = self.has_display;
        let mut use_askpass = false;
        match self
            .require
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("force") => {
                use_askpass = true;
                allow_askpass = true;
            }
            Some("prefer") => use_askpass = allow_askpass,
            Some("never") => allow_askpass = false,
            _ => {}
        }
        if !use_askpass {
            if self.has_terminal {
                return Ok(Source::Terminal);
            }
            use_askpass = true;
        }
        match (use_askpass && allow_askpass, &self.askpass) {
            (true, Some(program)) => Ok(Source::Askpass(program.clone())),
            (true, None) => Err(
                "no terminal to ask on, and SSH_ASKPASS is not set (set SSH_ASKPASS to a \
                 program that prints the passphrase)"
                    .to_owned(),
            ),
            (false, _) => Err(
                "no terminal to ask on (run on a terminal, or set SSH_ASKPASS to a program \
                 that prints the passphrase and SSH_ASKPASS_REQUIRE=force)"
                    .to_owned(),
            ),
        }
    }
}

/// The passphrase function for [`keyfile::read_identity_with_passphrase`]: asks with
/// ssh's prompt, `Enter passphrase for key 'FILE': `, and says when the previous one
/// was wrong.
///
/// [`keyfile::read_identity_with_passphrase`]: noise_echo::openssh::keyfile::read_identity_with_passphrase
pub(crate) fn for_key(request: PassphraseRequest<'_>) -> PassphraseAnswer {
    let path = request.path.display();
    let prompt = if request.attempt > 1 {
        format!("Bad passphrase, try again for key '{path}': ")
    } else {
        format!("Enter passphrase for key '{path}': ")
    };
    ask(&prompt)
}

/// Asks once with `prompt`, from the source ssh would choose. `Ok(None)` is an empty
/// answer or end of input.
///
/// # Errors
/// Why no passphrase could be asked for, with the fix.
pub(crate) fn ask(prompt: &str) -> PassphraseAnswer {
    match Environment::current().source()? {
        Source::Terminal => ask_terminal(prompt),
        Source::Askpass(program) => ask_program(&program, prompt),
    }
}

/// The askpass program to ask a question that is not a passphrase with (the host-key
/// confirmation), by the same rule as for a passphrase; `None` when ssh would use
/// the terminal, or has no way to ask.
pub(crate) fn askpass_for_questions() -> Option<String> {
    match Environment::current().source() {
        Ok(Source::Askpass(program)) => Some(program),
        _ => None,
    }
}

/// Asks `program` `question` as askpass is asked; its first line is the answer
/// (`Ok(None)` when empty).
///
/// # Errors
/// When the program cannot be run, fails, or prints something that is not UTF-8.
pub(crate) fn ask_askpass(program: &str, question: &str) -> PassphraseAnswer {
    ask_program(program, question)
}

/// Reads a passphrase on the controlling terminal with echo off, in the order ssh's
/// readpassphrase uses: echo goes off (and typeahead is discarded) before the prompt is
/// shown, so nothing typed in answer to it is ever echoed. Ctrl-C is read as a byte
/// while echo is off (signals are off too) and aborts, so the terminal is always
/// restored.
///
/// # Errors
/// When the terminal cannot be opened, set or read, or on Ctrl-C.
pub(crate) fn ask_terminal(prompt: &str) -> PassphraseAnswer {
    use nix::sys::termios::{self, LocalFlags, SetArg};
    use std::io::Write;
    let failed = |error: &dyn std::fmt::Display| format!("cannot ask on {TERMINAL}: {error}");
    let mut terminal = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(TERMINAL)
        .map_err(|error| failed(&error))?;
    let original = termios::tcgetattr(&terminal).map_err(|error| failed(&error))?;
    let mut silent = original.clone();
    silent
        .local_flags
        .remove(LocalFlags::ECHO | LocalFlags::ECHOE | LocalFlags::ECHOK | LocalFlags::ISIG);
    // The Enter the user types still moves to the next line.
    silent.local_flags.insert(LocalFlags::ECHONL);
    termios::tcsetattr(&terminal, SetArg::TCSAFLUSH, &silent).map_err(|error| failed(&error))?;
    let answer = read_line_silently(&mut terminal, prompt);
    let restored = termios::tcsetattr(&terminal, SetArg::TCSAFLUSH, &original);
    let answer = answer.map_err(|error| failed(&error))?;
    restored.map_err(|error| failed(&error))?;
    let _ = terminal.flush();
    match answer {
        Line::Text(text) => Ok(Some(text).filter(|text| !text.is_empty())),
        Line::EndOfInput => Ok(None),
        Line::Interrupted => Err("interrupted (Ctrl-C)".to_owned()),
    }
}

/// What the terminal gave.
enum Line {
    /// A line, without its end.
    Text(Zeroizing<String>),
    /// Ctrl-D on an empty line.
    EndOfInput,
    /// Ctrl-C.
    Interrupted,
}

/// Longest passphrase read from the terminal; ssh's buffer is 1 KiB.
const MAX_TERMINAL_LINE: usize = 1024;

/// Shows `prompt` and reads one line byte by byte, so no buffer but ours (zeroized)
/// ever holds the passphrase.
fn read_line_silently(terminal: &mut std::fs::File, prompt: &str) -> io::Result<Line> {
    use std::io::Write;
    terminal.write_all(prompt.as_bytes())?;
    terminal.flush()?;
    let mut line = Zeroizing::new(Vec::with_capacity(64));
    let mut byte = [0u8; 1];
    loop {
        let read = match terminal.read(&mut byte) {
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if read == 0 {
            if line.is_empty() {
                return Ok(Line::EndOfInput);
            }
            break;
        }
        match byte[0] {
            b'\n' | b'\r' => break,
            0x03 => return Ok(Line::Interrupted),
            other if line.len() < MAX_TERMINAL_LINE => line.push(other),
            // Past the limit the rest of the line is read and dropped.
            _ => {}
        }
    }
    byte.fill(0);
    match std::str::from_utf8(&line) {
        Ok(text) => Ok(Line::Text(Zeroizing::new(text.to_owned()))),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the passphrase is not UTF-8",
        )),
    }
}

/// Runs an askpass program as ssh does: the prompt is its argument, the passphrase
/// is its first line of output, and a failing program is no answer.
fn ask_program(program: &str, prompt: &str) -> PassphraseAnswer {
    let failed = |what: String| format!("the askpass program {program} (SSH_ASKPASS) {what}");
    let mut child = Command::new(program)
        .arg(prompt)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|error| failed(format!("could not be run: {error}")))?;
    let mut output = Zeroizing::new(Vec::new());
    let read = child
        .stdout
        .take()
        .map(|stdout| stdout.take(MAX_ASKPASS_OUTPUT).read_to_end(&mut output));
    let status = child
        .wait()
        .map_err(|error| failed(format!("could not be waited for: {error}")))?;
    if let Some(Err(error)) = read {
        return Err(failed(format!("could not be read: {error}")));
    }
    if !status.success() {
        return Err(failed(format!("failed ({status})")));
    }
    let line_end = output
        .iter()
        .position(|&byte| byte == b'\n' || byte == b'\r')
        .unwrap_or(output.len());
    let answer = std::str::from_utf8(&output[..line_end])
        .map_err(|_| failed("printed a passphrase that is not UTF-8".to_owned()))?;
    Ok(Some(Zeroizing::new(answer.to_owned())).filter(|answer| !answer.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(
        askpass: Option<&str>,
        require: Option<&str>,
        has_display: bool,
        has_terminal: bool,
    ) -> Environment {
        Environment {
            askpass: askpass.map(str::to_owned),
            require: require.map(str::to_owned),
            has_display,
            has_terminal,
        }
    }

    #[test]
    fn the_source_is_chosen_as_ssh_chooses_it() {
        let askpass = Some(Source::Askpass("ap".into()));
        let cases = [
            // (SSH_ASKPASS, SSH_ASKPASS_REQUIRE, DISPLAY, terminal) -> source
            (Some("ap"), None, false, true, Some(Source::Terminal)),
            (Some("ap"), None, true, true, Some(Source::Terminal)),
            (Some("ap"), None, true, false, askpass.clone()),
            (Some("ap"), None, false, false, None),
            (Some("ap"), Some("force"), false, true, askpass.clone()),
            (Some("ap"), Some("FORCE"), false, false, askpass.clone()),
            (Some("ap"), Some("prefer"), true, true, askpass.clone()),
            (
                Some("ap"),
                Some("prefer"),
                false,
                true,
                Some(Source::Terminal),
            ),
            (Some("ap"), Some("never"), true, false, None),
            (
                Some("ap"),
                Some("never"),
                true,
                true,
                Some(Source::Terminal),
            ),
            (None, Some("force"), false, true, None),
            (None, None, true, false, None),
        ];
        for (program, require, display, terminal, expected) in cases {
            let chosen = environment(program, require, display, terminal).source();
            assert_eq!(
                chosen.as_ref().ok(),
                expected.as_ref(),
                "{program:?} {require:?} display={display} terminal={terminal}: {chosen:?}"
            );
            if let Err(reason) = chosen {
                assert!(reason.contains("SSH_ASKPASS"), "{reason}");
            }
        }
    }
}
