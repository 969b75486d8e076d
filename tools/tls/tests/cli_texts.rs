//! Golden tests of `tls-echo`'s texts: every `--help` and its refusals, with their
//! exit statuses (tests/cmd/tls_echo.md). A changed text fails with a diff; when the
//! change is meant, regenerate with
//! `TRYCMD=overwrite cargo test -p noise-echo-tls --test cli_texts` and read the diff.

#[test]
fn cli_texts() {
    trycmd::TestCases::new()
        .register_bin(
            "tls-echo",
            std::path::Path::new(env!("CARGO_BIN_EXE_tls-echo")),
        )
        .case("tests/cmd/*.md");
}
