//! Connection hygiene against the real binary: silent, trickling and idle keep-alive sockets are
//! closed at the header deadline, and a flood of them beyond the connection cap neither blocks
//! `/healthz` nor cuts off a client that is in the middle of sending a request.

mod common;

use common::process::Server;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Deadline given to the server under test; the tests allow generous slack on top of it.
const HEADER_DEADLINE_SECS: u64 = 1;
const CAP: usize = 16;

async fn server(dir: &tempfile::TempDir) -> Server {
    let dir = dir.path().to_str().unwrap().to_owned();
    let server = Server::spawn(&[
        ("AGENTPROF_DATA_DIR", dir.as_str()),
        (
            "AGENTPROF_HEADER_READ_TIMEOUT_SECS",
            &HEADER_DEADLINE_SECS.to_string(),
        ),
        ("AGENTPROF_MAX_CONNECTIONS", &CAP.to_string()),
    ]);
    server.ready(&reqwest::Client::new()).await;
    server
}

async fn connect(server: &Server) -> TcpStream {
    TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap()
}

/// Reads until the server closes the socket (EOF or reset); the time it took.
async fn time_until_closed(mut socket: TcpStream) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let read_to_close = async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read_to_close)
        .await
        .expect("the server kept the connection open");
    start.elapsed()
}

/// One `GET /healthz` on a fresh connection; the status line.
async fn healthz(server: &Server) -> String {
    let mut socket = connect(server).await;
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    socket.read_to_end(&mut reply).await.unwrap();
    String::from_utf8_lossy(&reply)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_silent_connection_is_closed_at_the_header_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir).await;
    let took = time_until_closed(connect(&server).await).await;
    assert!(
        took >= Duration::from_millis(500),
        "closed before the deadline: {took:?}"
    );
}

#[tokio::test]
async fn trickled_headers_do_not_extend_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir).await;
    let mut socket = connect(&server).await;
    let start = Instant::now();
    let header =
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut cut_off = false;
    for byte in header {
        if socket.write_all(&[*byte]).await.is_err() {
            cut_off = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The close shows on the read side first.
        let mut probe = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), socket.read(&mut probe)).await
        {
            cut_off = true;
            break;
        }
    }
    assert!(cut_off, "a header trickled over 4 s was still being read");
    assert!(start.elapsed() < Duration::from_secs(HEADER_DEADLINE_SECS + 2));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir).await;
    let mut socket = connect(&server).await;
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = socket.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "kept alive after a 200"
    );
    let took = time_until_closed(socket).await;
    assert!(took < Duration::from_secs(HEADER_DEADLINE_SECS + 3));
}

#[tokio::test]
async fn a_flood_beyond_the_cap_evicts_idle_sockets_but_not_a_request_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir).await;

    // A client in the middle of a request: headers sent, body still coming.
    let body = br#"{"name": "slow upload"}"#;
    let mut uploading = connect(&server).await;
    uploading
        .write_all(
            format!(
                "POST /v1/runs HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    uploading.write_all(&body[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Four times the cap of sockets that say nothing.
    let mut flood = Vec::new();
    for _ in 0..CAP * 4 {
        flood.push(connect(&server).await);
    }
    let start = Instant::now();
    assert_eq!(healthz(&server).await, "HTTP/1.1 200 OK");
    assert!(
        start.elapsed() < Duration::from_millis(HEADER_DEADLINE_SECS * 1000 / 2),
        "/healthz waited {:?} behind idle sockets",
        start.elapsed()
    );

    uploading.write_all(&body[5..]).await.unwrap();
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&reply).contains("\r\n\r\n") {
        let n = uploading.read(&mut buf).await.unwrap();
        assert!(n > 0, "the upload's connection was closed mid-request");
        reply.extend_from_slice(&buf[..n]);
    }
    assert!(
        reply.starts_with(b"HTTP/1.1 201"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    drop(flood);
    server.stop();
}
