//! `--tls`: the run's self-signed certificate for 127.0.0.1, made with rcgen and written
//! to a directory of the run (removed when the run ends), for the servers (`--tls-cert`,
//! `--tls-key`) and the clients (`--cafile`).

use std::io;
use std::path::PathBuf;

/// The PEM files of the run.
pub struct Pair {
    dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pair {
    pub fn new() -> io::Result<Pair> {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .map_err(|e| io::Error::other(format!("rcgen: {e}")))?;
        let dir = std::env::temp_dir().join(format!("throng-c10m-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let pair = Pair {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            dir,
        };
        std::fs::write(&pair.cert, made.cert.pem())?;
        std::fs::write(&pair.key, made.signing_key.serialize_pem())?;
        Ok(pair)
    }

    /// The flags a server process gets.
    pub fn server_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
