//! Golden tests of the command line's texts, as rage does with `trycmd`: every
//! `--help` (cli/tests/cmd/help.md) and the main refusals with their exit status
//! (cli/tests/cmd/refusals.md, run in cli/tests/cmd/refusals.in/).
//!
//! A changed text fails here with a diff. When the change is meant, regenerate with
//! `TRYCMD=overwrite cargo test -p noise-echo-cli --test cli_texts` and read the diff.

mod common;

#[test]
fn cli_texts() {
    let home = tempfile::tempdir().unwrap();
    // An identity at the default path, so refusals after it (a closed port) show.
    let out = common::noise_echo(home.path())
        .arg("keygen")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    let home_text = home.path().display().to_string();
    trycmd::TestCases::new()
        .register_bin("noise-echo", std::path::Path::new(common::BIN))
        .env("HOME", home_text.clone())
        .env("XDG_CONFIG_HOME", format!("{home_text}/.config"))
        .insert_var("[HOME]", home_text)
        .unwrap()
        .case("tests/cmd/*.md");
}
