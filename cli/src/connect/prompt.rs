//! The question about an unknown host key, asked as ssh asks it: through
//! `$SSH_ASKPASS` when ssh would use it, else on the terminal.

use std::io::{IsTerminal, Write as _};

use noise_echo::client::{self, UnknownHost};
use noise_echo::identity::Fingerprint;

/// How the user is asked about an unknown host key, as ssh asks: `$SSH_ASKPASS`
/// when ssh would use it (`SSH_ASKPASS_REQUIRE`, a display without a terminal: the
/// same rule as for passphrases), else the terminal, even when standard input is a
/// pipe. With neither (scripts, CI, tests), there is no prompt and unknown hosts are
/// refused.
pub(super) fn host_key_prompt() -> Option<client::HostKeyPrompt> {
    if let Some(program) = crate::passphrase::askpass_for_questions() {
        return Some(Box::new(move |unknown: &UnknownHost| {
            ask_with_askpass(&program, unknown)
        }));
    }
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .ok()?;
    Some(Box::new(move |unknown: &UnknownHost| {
        ask_on_terminal(tty, unknown)
    }))
}

/// Runs the askpass program with the question as its argument; its first line of
/// output is the answer. A program that fails or prints nothing declines.
fn ask_with_askpass(program: &str, unknown: &UnknownHost) -> std::io::Result<bool> {
    let question = crate::render::unknown_host_prompt(unknown);
    let answer =
        crate::passphrase::ask_askpass(program, &question).map_err(std::io::Error::other)?;
    let answer = answer.as_deref().map(String::as_str).unwrap_or_default();
    Ok(parse_answer(answer, &unknown.key.fingerprint()) == Some(true))
}

/// `Some(true)` for yes or the right fingerprint, `Some(false)` for no or a wrong
/// fingerprint, `None` for anything else.
fn parse_answer(answer: &str, fingerprint: &Fingerprint) -> Option<bool> {
    let answer = answer.trim();
    if answer.eq_ignore_ascii_case("yes") {
        return Some(true);
    }
    if answer.eq_ignore_ascii_case("no") {
        return Some(false);
    }
    answer
        .parse::<Fingerprint>()
        .ok()
        .map(|typed| typed == *fingerprint)
}

fn ask_on_terminal(tty: std::fs::File, unknown: &UnknownHost) -> std::io::Result<bool> {
    use std::io::BufRead;
    let fingerprint = unknown.key.fingerprint();
    let mut writer = &tty;
    write!(writer, "{}", crate::render::unknown_host_prompt(unknown))?;
    let mut reader = std::io::BufReader::new(&tty);
    // Bounded: after a few unclear answers, treat it as no.
    for _ in 0..5 {
        let mut answer = String::new();
        if reader.read_line(&mut answer)? == 0 {
            return Ok(false);
        }
        match parse_answer(&answer, &fingerprint) {
            Some(true) => return Ok(true),
            Some(false) if answer.trim().eq_ignore_ascii_case("no") => return Ok(false),
            Some(false) => {
                writeln!(writer, "Warning: the fingerprint you typed does not match.")?;
                return Ok(false);
            }
            None => write!(writer, "Please type 'yes', 'no' or the fingerprint: ")?,
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_yes_no_or_the_fingerprint() {
        let key = noise_echo::identity::Identity::generate("k")
            .public_key()
            .fingerprint();
        let other = noise_echo::identity::Identity::generate("o")
            .public_key()
            .fingerprint();
        assert_eq!(parse_answer(" YES\n", &key), Some(true));
        assert_eq!(parse_answer("no", &key), Some(false));
        assert_eq!(parse_answer(&key.to_string(), &key), Some(true));
        assert_eq!(parse_answer(&other.to_string(), &key), Some(false));
        assert_eq!(parse_answer("y", &key), None);
    }
}
