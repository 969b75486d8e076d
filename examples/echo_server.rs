//! An embedded noise-echo server: a fresh host key, the allow-list from an
//! authorized_keys file, a loopback port. It prints one line with its address and
//! host key fingerprint, serves until its standard input closes, then shuts down.
//!
//! ```text
//! cargo run --example echo_server -- authorized_keys [127.0.0.1:0]
//! ```

use std::sync::Arc;

use noise_echo::identity::Identity;
use noise_echo::server::{Server, ServerConfig};
use noise_echo::wire::LocalIdentity;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let authorized_keys = args
        .next()
        .ok_or("usage: echo_server AUTHORIZED_KEYS [ADDR]")?;
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:0".to_owned());

    let host = Identity::generate("echo_server example");
    let config = ServerConfig::new(Arc::new(LocalIdentity::new(&host)), authorized_keys.into());
    let server = Server::new(config)?;
    let listener = noise_echo::server::bind(&listen).await?;
    println!(
        "listening on {} {}",
        listener.local_addr()?,
        host.public_key().fingerprint()
    );

    // Stop when standard input closes: a blocking read on its own thread.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = stop.send(());
    });
    server.run(listener, stopped).await?;
    Ok(())
}
