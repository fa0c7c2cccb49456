//! Process-level: SIGTERM drains (issue 6 item 5; RELIABILITY.md R5). With a live SSE stream
//! open and API requests in flight, `vetric serve` gets SIGTERM: the in-flight requests complete
//! with 200, the stream ends cleanly with a `retry:` hint, and the process exits 0 well within
//! the 30 s drain timeout.
//!
//! "In flight" is made certain rather than hoped for: each request sends its headers and half
//! its body before SIGTERM and the rest after, so the server is inside the handler (reading the
//! body) when the signal arrives.

mod ops_common;

use ops_common::{SLUG, api_login, http, start_serve, user_add, write_config};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vetric_sim::cvepro::{CveProSim, SimConfig};
use vetric_testkit::{free_local_addr, scratch_dir};

const EMAIL: &str = "drain.admin@example.com";
const PASSWORD: &str = "drain-test-password-4821";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_completes_in_flight_requests_and_ends_live_streams() {
    let dir = scratch_dir();
    let sim = CveProSim::start(SimConfig::scripted(), "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("simulator");
    let listen = free_local_addr();
    let base = format!("http://{listen}");
    let config = write_config(dir.path(), listen, &sim, "");
    let added = user_add(&config, EMAIL, PASSWORD);
    assert!(added.ok, "user add: {}{}", added.stdout, added.stderr);
    let mut vetric = start_serve(&config, listen).await;
    let token = api_login(&base, EMAIL, PASSWORD).await;

    // A live stream, read until it ends.
    let mut sse = http()
        .get(format!("{base}/sites/{SLUG}/events"))
        .bearer_auth(&token)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("open the live stream");
    assert_eq!(sse.status(), 200);
    let first = sse
        .chunk()
        .await
        .expect("first live chunk")
        .expect("the stream sends at once");
    assert!(
        String::from_utf8_lossy(&first).contains("event: cards"),
        "{first:?}"
    );
    let stream = tokio::spawn(async move {
        let mut text = String::new();
        loop {
            match sse.chunk().await {
                Ok(Some(bytes)) => text.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(None) => return Ok(text),
                Err(e) => return Err(format!("{e} after {text:?}")),
            }
        }
    });

    // Requests in flight: headers and half a body now, the rest after SIGTERM.
    let body = serde_json::json!({ "email": EMAIL, "password": PASSWORD }).to_string();
    let (head_part, tail_part) = body.split_at(body.len() / 2);
    let mut in_flight = Vec::new();
    for _ in 0..3 {
        let mut conn = tokio::net::TcpStream::connect(listen)
            .await
            .expect("connect");
        let request = format!(
            "POST /api/v1/auth/login HTTP/1.1\r\nHost: {listen}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{head_part}",
            body.len()
        );
        conn.write_all(request.as_bytes())
            .await
            .expect("send the first half");
        in_flight.push(conn);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut finishing = Vec::new();
    for mut conn in in_flight {
        let tail = tail_part.to_owned();
        finishing.push(tokio::spawn(async move {
            // After SIGTERM has been sent (below).
            tokio::time::sleep(Duration::from_millis(800)).await;
            conn.write_all(tail.as_bytes())
                .await
                .map_err(|e| format!("send the second half: {e}"))?;
            let mut answer = Vec::new();
            tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut answer))
                .await
                .map_err(|_| "no complete answer within 20 s".to_owned())?
                .map_err(|e| format!("read the answer: {e}"))?;
            Ok::<_, String>(String::from_utf8_lossy(&answer).into_owned())
        }));
    }

    let started = Instant::now();
    let status = vetric.terminate(Duration::from_secs(30)).await;
    let took = started.elapsed();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status}\n{}",
        vetric.transcript()
    );
    assert!(
        took < Duration::from_secs(15),
        "draining took {took:?}\n{}",
        vetric.transcript()
    );

    for f in finishing {
        let answer = f
            .await
            .expect("request task")
            .unwrap_or_else(|e| panic!("in-flight request failed: {e}\n{}", vetric.transcript()));
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "in-flight request did not complete with 200:\n{answer}"
        );
        assert!(answer.contains("\"token\""), "{answer}");
    }

    let text = tokio::time::timeout(Duration::from_secs(5), stream)
        .await
        .expect("the live stream ended")
        .expect("stream task")
        .unwrap_or_else(|e| panic!("the live stream was cut instead of ended: {e}"));
    assert!(
        text.contains("retry: 2000"),
        "the live stream ended without a retry hint: {text:?}"
    );
    sim.shutdown().await;
}
