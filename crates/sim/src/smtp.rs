//! A minimal SMTP server (RFC 5321) that keeps every mail it accepts, for tests and the demo:
//! enough of the protocol for a real client (EHLO/HELO, AUTH PLAIN and LOGIN, MAIL, RCPT,
//! DATA, RSET, NOOP, QUIT) and fault injection (refuse recipients, refuse the content, hang).
//!
//! It does not offer STARTTLS: no certificate generator is in the dependency tree and a
//! fixed test certificate would still not be trusted by the client's platform verifier. Test
//! the client against it with `SmtpTls::None`; a client set to STARTTLS must refuse it.
//!
//! Received mails are decoded the way a mail reader would show them: the subject from RFC
//! 2047 encoded words, the body from quoted-printable or base64 (UTF-8 assumed), so tests can
//! compare with what was sent.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Longest command or content line accepted; a longer one ends the session.
const MAX_LINE: usize = 64 * 1024;
/// Largest message accepted (also announced as SIZE).
const MAX_MESSAGE: usize = 10 * 1024 * 1024;

/// How the sink is set up.
#[derive(Debug, Clone, Default)]
pub struct SmtpSinkConfig {
    /// `(username, password)`: when set, `AUTH PLAIN LOGIN` is advertised and required before
    /// `MAIL FROM`; when not, AUTH is neither advertised nor accepted.
    pub credentials: Option<(String, String)>,
}

/// One SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpReply {
    pub code: u16,
    pub text: String,
}

impl SmtpReply {
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        Self {
            code,
            text: text.into(),
        }
    }

    /// `550 5.1.1 mailbox unavailable`: the recipient is refused for good.
    pub fn mailbox_unavailable() -> Self {
        Self::new(550, "5.1.1 <recipient>: mailbox unavailable")
    }

    /// `451 4.3.0 try again later`: a temporary refusal (greylisting, overload).
    pub fn try_again_later() -> Self {
        Self::new(451, "4.3.0 Temporary failure, try again later")
    }
}

/// Where a hanging sink stops answering (it keeps reading, so the client sees silence, not a
/// closed connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangAt {
    /// No greeting after the connection is accepted.
    Greeting,
    /// No answer to `RCPT TO`.
    Rcpt,
    /// The content is received and kept (it shows in [`SmtpSinkHandle::mails`]), but the
    /// final answer never comes: the "may have been sent" case.
    AfterContent,
}

/// Faults in force; applied to every session until changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SmtpFaults {
    /// Answer every `RCPT TO` with this reply.
    pub rcpt: Option<SmtpReply>,
    /// Answer the end of the content with this reply (the mail is not kept).
    pub content: Option<SmtpReply>,
    pub hang: Option<HangAt>,
    /// Advertise STARTTLS, answer it with 220, then send bytes that are not TLS: a failed
    /// handshake, as with a relay whose certificate or TLS setup is broken.
    pub broken_starttls: bool,
}

/// A mail the sink accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The EHLO/HELO argument.
    pub helo: String,
    /// The username that authenticated in this session, if any.
    pub authenticated_as: Option<String>,
    /// The `MAIL FROM` address (without angle brackets).
    pub mail_from: String,
    /// The `RCPT TO` addresses.
    pub rcpt_to: Vec<String>,
    /// Header fields in order, unfolded, values as received (still encoded).
    pub headers: Vec<(String, String)>,
    /// The `Subject` decoded from RFC 2047 encoded words.
    pub subject: Option<String>,
    /// The body decoded from its Content-Transfer-Encoding, line ends as `\n`.
    pub body: String,
    /// The message as received (dot-unstuffed, CRLF line ends).
    pub raw: String,
}

impl ReceivedMail {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One AUTH attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthAttempt {
    /// `PLAIN` or `LOGIN`.
    pub mechanism: String,
    pub username: String,
    pub accepted: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a sink lock is a bug in a test; keep serving anyway.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Default)]
struct Shared {
    config: SmtpSinkConfig,
    mails: Mutex<Vec<ReceivedMail>>,
    auth_attempts: Mutex<Vec<AuthAttempt>>,
    faults: Mutex<SmtpFaults>,
    connections: Mutex<u64>,
}

/// The SMTP sink.
pub struct SmtpSink;

impl SmtpSink {
    /// Starts a sink without authentication on `127.0.0.1:0`.
    pub async fn start() -> io::Result<(SocketAddr, SmtpSinkHandle)> {
        Self::start_with(SmtpSinkConfig::default()).await
    }

    /// Starts a sink on `127.0.0.1:0` with these settings. Must be called inside a Tokio
    /// runtime; serves until the handle is dropped.
    pub async fn start_with(config: SmtpSinkConfig) -> io::Result<(SocketAddr, SmtpSinkHandle)> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            ..Shared::default()
        });
        let accept_shared = shared.clone();
        let task = tokio::spawn(async move {
            // Owned here so that aborting this task (handle dropped) also ends every session.
            let mut sessions = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            *lock(&accept_shared.connections) += 1;
                            sessions.spawn(session(stream, accept_shared.clone()));
                        }
                        Err(e) => tracing::warn!(error = %e, "smtp sink: accept failed"),
                    },
                    Some(_) = sessions.join_next() => {}
                }
            }
        });
        tracing::info!(%addr, "smtp sink listening");
        Ok((addr, SmtpSinkHandle { shared, addr, task }))
    }
}

/// A running sink. Dropping it stops the server and every session.
pub struct SmtpSinkHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl SmtpSinkHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every mail accepted so far, oldest first.
    pub fn mails(&self) -> Vec<ReceivedMail> {
        lock(&self.shared.mails).clone()
    }

    /// Forgets the accepted mails.
    pub fn clear_mails(&self) {
        lock(&self.shared.mails).clear();
    }

    /// Every AUTH attempt so far.
    pub fn auth_attempts(&self) -> Vec<AuthAttempt> {
        lock(&self.shared.auth_attempts).clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        *lock(&self.shared.connections)
    }

    pub fn set_faults(&self, faults: SmtpFaults) {
        *lock(&self.shared.faults) = faults;
    }

    pub fn faults(&self) -> SmtpFaults {
        lock(&self.shared.faults).clone()
    }

    pub fn clear_faults(&self) {
        self.set_faults(SmtpFaults::default());
    }
}

impl Drop for SmtpSinkHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Default)]
struct Session {
    helo: Option<String>,
    authenticated_as: Option<String>,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
}

impl Session {
    fn reset_transaction(&mut self) {
        self.mail_from = None;
        self.rcpt_to.clear();
    }
}

enum Next {
    Continue,
    Close,
    Hang,
}

async fn session(stream: TcpStream, shared: Arc<Shared>) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    if lock(&shared.faults).hang == Some(HangAt::Greeting) {
        drain(&mut read).await;
        return;
    }
    if reply(&mut write, 220, &["vetric-sim ESMTP ready"])
        .await
        .is_err()
    {
        return;
    }
    let mut state = Session::default();
    loop {
        let Some(line) = read_line(&mut read).await else {
            return;
        };
        match command(&line, &mut state, &mut read, &mut write, &shared).await {
            Ok(Next::Continue) => {}
            Ok(Next::Close) | Err(_) => return,
            Ok(Next::Hang) => {
                drain(&mut read).await;
                return;
            }
        }
    }
}

async fn command(
    line: &str,
    state: &mut Session,
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    write: &mut OwnedWriteHalf,
    shared: &Shared,
) -> io::Result<Next> {
    let (verb, arg) = match line.split_once(' ') {
        Some((v, a)) => (v.to_ascii_uppercase(), a.trim()),
        None => (line.to_ascii_uppercase(), ""),
    };
    let auth_required = shared.config.credentials.is_some();
    match verb.as_str() {
        "EHLO" | "HELO" => {
            if arg.is_empty() {
                reply(write, 501, &["5.5.4 Syntax: EHLO hostname"]).await?;
                return Ok(Next::Continue);
            }
            state.helo = Some(arg.to_owned());
            state.reset_transaction();
            if verb == "HELO" {
                reply(write, 250, &["vetric-sim"]).await?;
            } else {
                let greeting = format!("vetric-sim greets {arg}");
                let size = format!("SIZE {MAX_MESSAGE}");
                let mut lines = vec![greeting.as_str(), "8BITMIME", "SMTPUTF8"];
                if auth_required {
                    lines.push("AUTH PLAIN LOGIN");
                }
                if lock(&shared.faults).broken_starttls {
                    lines.push("STARTTLS");
                }
                lines.push(size.as_str());
                reply(write, 250, &lines).await?;
            }
        }
        "AUTH" => auth(arg, state, read, write, shared).await?,
        "MAIL" => {
            if state.helo.is_none() {
                reply(write, 503, &["5.5.1 EHLO first"]).await?;
            } else if auth_required && state.authenticated_as.is_none() {
                reply(write, 530, &["5.7.0 Authentication required"]).await?;
            } else if state.mail_from.is_some() {
                reply(write, 503, &["5.5.1 Sender already given"]).await?;
            } else {
                match path_arg(arg, "FROM:") {
                    Some(from) => {
                        state.mail_from = Some(from);
                        reply(write, 250, &["2.1.0 Ok"]).await?;
                    }
                    None => reply(write, 501, &["5.5.4 Syntax: MAIL FROM:<address>"]).await?,
                }
            }
        }
        "RCPT" => {
            if state.mail_from.is_none() {
                reply(write, 503, &["5.5.1 MAIL first"]).await?;
                return Ok(Next::Continue);
            }
            let faults = lock(&shared.faults).clone();
            if faults.hang == Some(HangAt::Rcpt) {
                return Ok(Next::Hang);
            }
            match path_arg(arg, "TO:") {
                None => reply(write, 501, &["5.5.4 Syntax: RCPT TO:<address>"]).await?,
                Some(_) if faults.rcpt.is_some() => {
                    if let Some(r) = faults.rcpt {
                        reply(write, r.code, &[r.text.as_str()]).await?;
                    }
                }
                Some(to) => {
                    state.rcpt_to.push(to);
                    reply(write, 250, &["2.1.5 Ok"]).await?;
                }
            }
        }
        "DATA" => {
            if state.rcpt_to.is_empty() {
                reply(write, 503, &["5.5.1 RCPT first"]).await?;
                return Ok(Next::Continue);
            }
            reply(write, 354, &["End data with <CR><LF>.<CR><LF>"]).await?;
            let Some(raw) = read_content(read).await else {
                return Ok(Next::Close);
            };
            let faults = lock(&shared.faults).clone();
            if let Some(r) = faults.content {
                state.reset_transaction();
                reply(write, r.code, &[r.text.as_str()]).await?;
                return Ok(Next::Continue);
            }
            let mail = parse_mail(state, raw);
            let n = {
                let mut mails = lock(&shared.mails);
                mails.push(mail);
                mails.len()
            };
            state.reset_transaction();
            if faults.hang == Some(HangAt::AfterContent) {
                return Ok(Next::Hang);
            }
            reply(write, 250, &[format!("2.0.0 Ok: queued as {n}").as_str()]).await?;
        }
        "RSET" => {
            state.reset_transaction();
            reply(write, 250, &["2.0.0 Ok"]).await?;
        }
        "NOOP" => reply(write, 250, &["2.0.0 Ok"]).await?,
        "QUIT" => {
            reply(write, 221, &["2.0.0 Bye"]).await?;
            return Ok(Next::Close);
        }
        "STARTTLS" if lock(&shared.faults).broken_starttls => {
            reply(write, 220, &["2.0.0 Ready to start TLS"]).await?;
            write.write_all(b"this is not a TLS record\r\n").await?;
            write.flush().await?;
            return Ok(Next::Hang);
        }
        "STARTTLS" => reply(write, 502, &["5.5.1 STARTTLS not available"]).await?,
        "VRFY" => reply(write, 252, &["2.5.2 Cannot verify"]).await?,
        _ => reply(write, 500, &["5.5.2 Command not recognised"]).await?,
    }
    Ok(Next::Continue)
}

async fn auth(
    arg: &str,
    state: &mut Session,
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    write: &mut OwnedWriteHalf,
    shared: &Shared,
) -> io::Result<()> {
    let Some((user, pass)) = shared.config.credentials.clone() else {
        return reply(write, 503, &["5.5.1 AUTH not available"]).await;
    };
    if state.authenticated_as.is_some() {
        return reply(write, 503, &["5.5.1 Already authenticated"]).await;
    }
    let (mechanism, initial) = match arg.split_once(' ') {
        Some((m, i)) => (m.to_ascii_uppercase(), Some(i.trim().to_owned())),
        None => (arg.to_ascii_uppercase(), None),
    };
    let given = match mechanism.as_str() {
        "PLAIN" => {
            let response = match initial {
                Some(i) => i,
                None => {
                    reply(write, 334, &[""]).await?;
                    read_line(read).await.unwrap_or_default()
                }
            };
            decode_b64(&response).and_then(|bytes| {
                // authzid \0 authcid \0 password
                let mut parts = bytes.split(|b| *b == 0);
                let _authzid = parts.next()?;
                let u = String::from_utf8(parts.next()?.to_vec()).ok()?;
                let p = String::from_utf8(parts.next()?.to_vec()).ok()?;
                Some((u, p))
            })
        }
        "LOGIN" => {
            let user_b64 = match initial {
                Some(i) => i,
                None => {
                    reply(write, 334, &["VXNlcm5hbWU6"]).await?;
                    read_line(read).await.unwrap_or_default()
                }
            };
            reply(write, 334, &["UGFzc3dvcmQ6"]).await?;
            let pass_b64 = read_line(read).await.unwrap_or_default();
            let u = decode_b64(&user_b64).and_then(|b| String::from_utf8(b).ok());
            let p = decode_b64(&pass_b64).and_then(|b| String::from_utf8(b).ok());
            u.zip(p)
        }
        _ => {
            return reply(write, 504, &["5.5.4 Unrecognised authentication type"]).await;
        }
    };
    let Some((given_user, given_pass)) = given else {
        return reply(write, 501, &["5.5.2 Cannot decode response"]).await;
    };
    let accepted = given_user == user && given_pass == pass;
    lock(&shared.auth_attempts).push(AuthAttempt {
        mechanism,
        username: given_user.clone(),
        accepted,
    });
    if accepted {
        state.authenticated_as = Some(given_user);
        reply(write, 235, &["2.7.0 Authentication successful"]).await
    } else {
        reply(write, 535, &["5.7.8 Authentication credentials invalid"]).await
    }
}

/// Keeps reading (and ignoring) until the client goes away: a hung server that is still
/// connected.
async fn drain(read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = read.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

async fn reply(write: &mut OwnedWriteHalf, code: u16, lines: &[&str]) -> io::Result<()> {
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        out.push_str(&format!("{code}{sep}{line}\r\n"));
    }
    if lines.is_empty() {
        out.push_str(&format!("{code}\r\n"));
    }
    write.write_all(out.as_bytes()).await?;
    write.flush().await
}

/// One line without its line end; `None` at end of stream, on error, or when too long.
async fn read_line(read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<String> {
    let mut buf = Vec::new();
    let n = (&mut *read)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut buf)
        .await
        .ok()?;
    if n == 0 || !buf.ends_with(b"\n") {
        return None;
    }
    let text = String::from_utf8_lossy(&buf);
    Some(text.trim_end_matches(['\r', '\n']).to_owned())
}

/// The content after `DATA`, up to the lone `.`, dot-unstuffed, CRLF line ends.
async fn read_content(read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<String> {
    let mut raw = String::new();
    loop {
        let line = read_line(read).await?;
        if line == "." {
            return Some(raw);
        }
        let line = line.strip_prefix('.').unwrap_or(&line);
        raw.push_str(line);
        raw.push_str("\r\n");
        if raw.len() > MAX_MESSAGE {
            return None;
        }
    }
}

/// `FROM:<a@b> PARAMS` → `a@b` (`<>` is the null sender, kept as an empty string).
fn path_arg(arg: &str, prefix: &str) -> Option<String> {
    let rest = arg.get(..prefix.len())?;
    if !rest.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = arg[prefix.len()..].trim_start();
    let inner = rest.strip_prefix('<')?;
    let end = inner.find('>')?;
    Some(inner[..end].to_owned())
}

fn parse_mail(state: &Session, raw: String) -> ReceivedMail {
    let (head, body) = match raw.split_once("\r\n\r\n") {
        Some((h, b)) => (h.to_owned(), b.to_owned()),
        None => (raw.clone(), String::new()),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = headers.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let subject = get("Subject").map(|s| decode_words(&s));
    let encoding = get("Content-Transfer-Encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let decoded = match encoding.as_str() {
        "quoted-printable" => decode_qp(&body, false),
        "base64" => decode_b64(&body).unwrap_or_else(|| body.clone().into_bytes()),
        _ => body.clone().into_bytes(),
    };
    let body = String::from_utf8_lossy(&decoded).replace("\r\n", "\n");
    ReceivedMail {
        helo: state.helo.clone().unwrap_or_default(),
        authenticated_as: state.authenticated_as.clone(),
        mail_from: state.mail_from.clone().unwrap_or_default(),
        rcpt_to: state.rcpt_to.clone(),
        headers,
        subject,
        body,
        raw,
    }
}

fn decode_b64(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    BASE64.decode(compact).ok()
}

/// Quoted-printable (RFC 2045 §6.7); `header` also maps `_` to a space (RFC 2047 "Q").
fn decode_qp(text: &str, header: bool) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' if bytes.get(i + 1..i + 3) == Some(b"\r\n") => i += 3,
            b'=' if bytes.get(i + 1) == Some(&b'\n') => i += 2,
            b'=' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'=');
                        i += 1;
                    }
                }
            }
            b'_' if header => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`); whitespace between two
/// encoded words is dropped, as the RFC says.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut last_was_word = false;
    while !rest.is_empty() {
        let Some(start) = rest.find("=?") else {
            out.push_str(rest);
            break;
        };
        let (before, candidate) = rest.split_at(start);
        let word = candidate[2..].splitn(3, '?').collect::<Vec<_>>();
        let decoded = if word.len() == 3 {
            word[2].find("?=").and_then(|end| {
                let text = &word[2][..end];
                let bytes = match word[1].to_ascii_lowercase().as_str() {
                    "b" => decode_b64(text)?,
                    "q" => decode_qp(text, true),
                    _ => return None,
                };
                let consumed = 2 + word[0].len() + 1 + word[1].len() + 1 + end + 2;
                Some((String::from_utf8_lossy(&bytes).into_owned(), consumed))
            })
        } else {
            None
        };
        match decoded {
            Some((text, consumed)) => {
                if !(last_was_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&text);
                rest = &candidate[consumed..];
                last_was_word = true;
            }
            None => {
                out.push_str(before);
                out.push_str("=?");
                rest = &candidate[2..];
                last_was_word = false;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_words_decode() {
        assert_eq!(
            decode_words("=?utf-8?b?Q2FycmVnYWRvciBvZmZsaW5lIOKAlCBCbG9jbyBB?="),
            "Carregador offline — Bloco A"
        );
        assert_eq!(decode_words("=?UTF-8?Q?Ol=C3=A1_mundo?= !"), "Olá mundo !");
        assert_eq!(decode_words("=?utf-8?q?a?= =?utf-8?q?b?="), "ab");
        assert_eq!(decode_words("plain =? text"), "plain =? text");
    }

    #[test]
    fn quoted_printable_decodes() {
        assert_eq!(
            String::from_utf8(decode_qp("Ol=C3=A1 =\r\nmundo", false)).unwrap(),
            "Olá mundo"
        );
    }

    #[test]
    fn paths_parse() {
        assert_eq!(
            path_arg("FROM:<a@b> BODY=8BITMIME", "FROM:").as_deref(),
            Some("a@b")
        );
        assert_eq!(path_arg("to: <c@d>", "TO:").as_deref(), Some("c@d"));
        assert_eq!(path_arg("FROM:<>", "FROM:").as_deref(), Some(""));
        assert_eq!(path_arg("FROM:a@b", "FROM:"), None);
    }
}
