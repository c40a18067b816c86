//! A handler that panics takes down only its connection: the connection is closed with
//! 1011 (a request is answered 500), the panic is counted and reported, and the worker
//! and every other connection go on, on each backend. The panic here happens while the
//! connection has output in flight (a large reply its peer does not read), which on
//! io_uring means sends the kernel holds when the callback unwinds.

mod common;

use common::*;
use throng_engine::{
    Decision, Handler, HttpRequest, HttpResponse, Message, UpgradeRequest, WebSocket,
};

/// Echoes; `flood` sends 32 MiB at once; `panic` panics; a path of `/panic` panics in
/// `on_upgrade`, a plain request for `/panic` panics in `on_request`.
struct Panicky;

impl Handler for Panicky {
    type State = ();

    fn on_upgrade<'r>(&mut self, req: &UpgradeRequest<'r>) -> Decision<'r, ()> {
        if req.path() == "/panic" {
            panic!("on_upgrade panics on purpose");
        }
        Decision::accept(())
    }

    fn on_message(&mut self, ws: &mut WebSocket<'_, ()>, message: Message<'_>) {
        match message {
            Message::Text("flood") => {
                let big = vec![7u8; 32 << 20];
                ws.send_binary(&big).expect("the flood is accepted");
            }
            Message::Text("panic") => panic!("on_message panics on purpose"),
            m => {
                let _ = ws.send(m);
            }
        }
    }

    fn on_request(&mut self, req: &HttpRequest<'_>, res: &mut HttpResponse) {
        if req.path() == "/panic" {
            panic!("on_request panics on purpose");
        }
        res.set(200, "text/plain", "fine\n");
    }
}

#[test]
fn a_panicking_callback_closes_its_connection_and_the_worker_goes_on() {
    for backend in backends() {
        let mut cfg = config(backend);
        cfg.max_buffered = 64 << 20;
        let server = start_with(cfg, |_| Panicky);
        let addr = server.local_addr();
        let mut bystanders: Vec<_> = (0..4).map(|_| connect(addr, "/")).collect();

        // A connection with 32 MiB in flight that it does not read, then a panic.
        let mut victim = Raw::open(addr);
        // Both in one write: reading pauses behind the flood, so a later "panic" would
        // wait until the victim reads.
        let mut both = encode(true, OP_TEXT, b"flood", Some(MASK));
        both.extend_from_slice(&encode(true, OP_TEXT, b"panic", Some(MASK)));
        victim.write(&both);
        assert!(eventually(EVENT_TIMEOUT, || stats(&server).handler_panics == 1));
        assert!(pool_in_use(&server) >= 1, "the flood is still in flight");

        // Everyone else is served by the same workers, as before.
        for (i, ws) in bystanders.iter_mut().enumerate() {
            let text = format!("still here {i}");
            ws.send(tungstenite::Message::text(text.clone())).unwrap();
            assert_eq!(read_data(ws), tungstenite::Message::text(text));
        }
        assert_eq!(server.handle().live_workers(), 2);

        // The victim gets its flood (accepted output is not lost), then the 1011.
        let f = victim.read_frame();
        assert_eq!((f.opcode, f.payload.len()), (OP_BINARY, 32 << 20));
        assert_eq!(victim.read_close().map(|c| c.0), Some(1011));
        victim.send_close(1011, "");
        victim.expect_eof();

        // A panic in on_upgrade answers 500, in on_request 500, and the worker goes on.
        let mut raw = Raw::tcp(addr);
        raw.write(upgrade_request(addr, "/panic", "").as_bytes());
        assert_eq!(raw.read_head().status, 500);
        raw.expect_closed();
        let mut raw = Raw::tcp(addr);
        raw.write(format!("GET /panic HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes());
        assert_eq!(raw.read_head().status, 500);
        let mut raw = Raw::tcp(addr);
        raw.write(format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes());
        assert_eq!(raw.read_head().status, 200);

        // A posted job that panics is counted too; the next job runs.
        let handle = server.handle();
        assert!(handle.post(0, |_, _| panic!("a job panics on purpose")));
        assert!(eventually(EVENT_TIMEOUT, || stats(&server).handler_panics == 4));
        assert_eq!(on_workers(&server, |c| c.len()).len(), 2);

        for ws in &mut bystanders {
            ws.send(tungstenite::Message::text("bye")).unwrap();
            assert_eq!(read_data(ws), tungstenite::Message::text("bye"));
        }
        let report = server
            .shutdown()
            .expect("a clean shutdown after the panics");
        assert_eq!(report.stats.handler_panics, 4, "{report:?}");
        assert_eq!(
            report.connections,
            report.closed_cleanly + report.closed_uncleanly + report.forced
        );
    }
}
