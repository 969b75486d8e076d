//! An embedder's allow-list held in memory (`AllowList::Keys`): keys in it are
//! served, others refused, and no authorized_keys file is read.

mod common;

use std::sync::Arc;

use common::TestServer;
use noise_echo::client;
use noise_echo::identity::Identity;
use noise_echo::openssh::authorized_keys::{self, AuthorizedKeys};
use noise_echo::server::{AllowList, Server, ServerConfig};
use noise_echo::wire::Reply;

#[tokio::test]
async fn keys_held_in_memory_admit_their_clients_and_only_them() {
    let alice = Identity::from_seed(&[1; 32], "alice");
    let mallory = Identity::from_seed(&[2; 32], "mallory");
    let line = authorized_keys::append_key(&[], &alice.public_key(), alice.comment());
    let keys = Arc::new(AuthorizedKeys::parse(&line, "(in memory)".as_ref()));
    // The file the server would otherwise read authorizes nobody, and is removed: a
    // server that read it would refuse alice.
    let server = TestServer::start_with(&[], |config| {
        config.allow_list = AllowList::Keys(Arc::clone(&keys));
    })
    .await;
    std::fs::remove_file(&server.authorized_keys).unwrap();

    let mut connection = server.connect(&alice).await;
    assert_eq!(
        connection.request(b"in memory").await.unwrap(),
        Reply::Response(b"IN MEMORY".to_vec())
    );

    let mut intruder = server.connect(&mallory).await;
    let error = intruder.request(b"let me in").await.unwrap_err();
    assert_eq!(
        client::permission_denied_reason(&error),
        Some(
            format!(
                "permission denied: key {} is not in authorized_keys",
                mallory.public_key().fingerprint()
            )
            .as_str()
        )
    );
    server.stop().await;
}

#[test]
fn a_server_with_impossible_limits_is_refused_before_it_binds() {
    let host = Identity::from_seed(&[3; 32], "host");
    let mut config = ServerConfig::new(
        Arc::new(noise_echo::wire::LocalIdentity::new(&host)),
        "authorized_keys".into(),
    );
    config.max_connections = 0;
    let error = Server::new(config).unwrap_err();
    assert_eq!(
        error.to_string(),
        "max_connections must be at least 1 (it is 0)"
    );
}
