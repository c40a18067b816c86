//! A job posted while a turn runs is served at the end of that turn, not after the input
//! that reached the kernel before it. On io_uring the wakeup's completion queues behind
//! every receive completion ahead of it, and with deferred task work the kernel hands out
//! about 20 per wait: without this, a job or a publish waits as many turns as the backlog
//! takes. On each backend, against real tungstenite clients.

mod common;

use std::sync::{Arc, Mutex, mpsc};

use common::*;
use throng_engine::{Decision, Handler, Message, UpgradeRequest, WebSocket};
use tungstenite::Message as TMessage;

/// Echoes; the text `stall` holds the worker in its handler until the test lets it go,
/// and from then on the messages handled are counted.
struct Staller {
    stalled: mpsc::Sender<()>,
    release: Arc<Mutex<mpsc::Receiver<()>>>,
    after: Option<usize>,
}

impl Handler for Staller {
    type State = ();
    fn on_upgrade<'r>(&mut self, _req: &UpgradeRequest<'r>) -> Decision<'r, ()> {
        Decision::accept(())
    }
    fn on_message(&mut self, ws: &mut WebSocket<'_, ()>, message: Message<'_>) {
        if message == Message::Text("stall") {
            let _ = self.stalled.send(());
            let _ = self.release.lock().unwrap().recv_timeout(EVENT_TIMEOUT);
            self.after = Some(0);
            return;
        }
        if let Some(n) = &mut self.after {
            *n += 1;
        }
        let _ = ws.send(message);
    }
}

#[test]
fn a_job_posted_during_a_turn_runs_before_the_input_queued_ahead_of_it() {
    // Large receives (an eighth of a provided buffer each): io_uring keeps the kernel's
    // batch for those, so the wakeup's completion sits behind all of them.
    const CONNS: usize = 300;
    const SIZE: usize = 8 << 10;
    for backend in backends() {
        let (stalled_tx, stalled) = mpsc::channel();
        let (release_tx, release) = mpsc::channel();
        let release = Arc::new(Mutex::new(release));
        let config = config(backend).with_workers(1);
        let server = throng_engine::Server::start(config, move |_| Staller {
            stalled: stalled_tx.clone(),
            release: release.clone(),
            after: None,
        })
        .expect("starts");
        assert_eq!(server.backend(), kind_of(backend));
        let addr = server.local_addr();
        let mut staller = connect(addr, "/");
        let mut clients: Vec<Client> = (0..CONNS).map(|_| connect(addr, "/")).collect();
        assert!(eventually(EVENT_TIMEOUT, || open_count(&server) == CONNS + 1));

        staller.send(TMessage::text("stall")).unwrap();
        stalled
            .recv_timeout(EVENT_TIMEOUT)
            .expect("the worker reaches the stall");
        // While the worker sleeps in its handler: input on every connection, then a job.
        for (i, ws) in clients.iter_mut().enumerate() {
            ws.send(TMessage::binary(pattern(i as u64, SIZE))).unwrap();
        }
        let (seen_tx, seen) = mpsc::channel();
        assert!(server.handle().post(0, move |h, _| {
            let _ = seen_tx.send(h.after);
        }));
        release_tx.send(()).unwrap();
        let after = seen
            .recv_timeout(EVENT_TIMEOUT)
            .expect("the job runs")
            .expect("after the stall");
        assert_eq!(
            after, 0,
            "{backend:?}: the job ran after {after} of the {CONNS} messages that were queued \
             before it was posted, not at the end of the turn it was posted in"
        );
        // Nothing was skipped for it: every message comes back whole.
        for (i, ws) in clients.iter_mut().enumerate() {
            match read_data(ws) {
                TMessage::Binary(b) => assert!(
                    b[..] == pattern(i as u64, SIZE)[..],
                    "{backend:?}: connection {i}'s echo"
                ),
                other => panic!("expected the echo, got {}", describe(&other)),
            }
        }
        drop(staller);
        server.shutdown().expect("shuts down");
    }
}
