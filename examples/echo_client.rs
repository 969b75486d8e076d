//! An embedded noise-echo client that pins the server's key: no known_hosts file is
//! read or written. It sends each MESSAGE and prints each reply.
//!
//! ```text
//! cargo run --example echo_client -- ADDR SHA256:FINGERPRINT IDENTITY_FILE MESSAGE...
//! ```

use noise_echo::client::{self, ClientConfig, Target};
use noise_echo::openssh::keyfile;
use noise_echo::wire::{LocalIdentity, Reply};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [address, fingerprint, identity, messages @ ..] = args.as_slice() else {
        return Err("usage: echo_client ADDR SHA256:FINGERPRINT IDENTITY_FILE MESSAGE...".into());
    };
    let address: std::net::SocketAddr = address.parse()?;
    let target = Target {
        host: address.ip().to_string(),
        port: address.port(),
    };
    let identity = keyfile::read_identity(identity.as_ref())?;
    let config = ClientConfig::pinned(LocalIdentity::new(&identity), fingerprint.parse()?);
    let mut connection = client::connect(&target, config).await?;
    for message in messages {
        match connection.request(message.as_bytes()).await? {
            Reply::Response(body) => println!("{}", String::from_utf8_lossy(&body)),
            Reply::Error(reason) => eprintln!("error from the server: {reason}"),
        }
    }
    Ok(())
}
