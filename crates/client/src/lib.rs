//! Talking to a team's daemon: connecting, authenticating as the operator or as an agent,
//! making requests and receiving pushes, plus starting the daemon on demand.
//!
//! [`Client`] is blocking (the CLI, tests); [`AsyncClient`] runs on tokio with a background
//! reader so requests can be pipelined and pushes arrive while the agent works (the worker).

mod async_client;
mod autostart;
pub mod heal;
pub mod join;
pub mod local;

pub use async_client::{AsyncClient, Queued};
pub use autostart::{
    ENV_START_FD, ENV_STARTER_GUARD_FD, StartError, daemon_running, ensure_daemon,
    ensure_daemon_guarded_by_me,
};

use agent_team_paths::TeamPaths;
use agent_team_protocol::frame::{self, FrameError};
use agent_team_protocol::*;
use std::collections::{HashMap, VecDeque};
use std::io::{BufReader, BufWriter, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers on the team's socket.
    #[error("cannot connect to {path}: {source}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The operator credential could not be read.
    #[error("cannot read the operator credential {path}: {source}")]
    Credential {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The daemon refused the handshake.
    #[error("the daemon refused the connection: {0}")]
    Refused(ErrorBody),
    /// The daemon answered the request with an error.
    #[error("{0}")]
    Server(ErrorBody),
    /// The connection broke or carried something unreadable.
    #[error("connection to the daemon failed: {0}")]
    Frame(#[from] FrameError),
    /// The daemon answered with a reply of an unexpected kind.
    #[error("unexpected reply from the daemon: {0}")]
    Unexpected(String),
    /// No answer within the time allowed.
    #[error("the daemon did not answer in time")]
    Timeout,
}

/// A fresh request id (`rid`): 64 random bits drawn once per process, then a counter, so ids
/// are unique across processes and restarts and cost no system call each
/// (`<16 hex digits>-<counter in hex>`; written by hand, as every mutating request makes one).
pub fn new_rid() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<String> = OnceLock::new();
    static N: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let mut b = [0u8; 8];
        if getrandom::fill(&mut b).is_err() {
            // No entropy source: time and pid are still unique on this machine.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            b = (t ^ (u64::from(std::process::id()) << 40)).to_le_bytes();
        }
        format!("{:016x}-", u64::from_le_bytes(b))
    });
    let n = N.fetch_add(1, Ordering::Relaxed);
    let mut rid = String::with_capacity(prefix.len() + 16);
    rid.push_str(prefix);
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        let d = ((n >> (i * 4)) & 0xf) as u8;
        rid.push(char::from(if d < 10 { b'0' + d } else { b'a' + d - 10 }));
    }
    rid
}

impl ClientError {
    /// The server's error code, when the daemon refused the request or the handshake.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server(e) | ClientError::Refused(e) => Some(e.code),
            _ => None,
        }
    }

    /// The server's error body, if any.
    pub fn body(&self) -> Option<&ErrorBody> {
        match self {
            ClientError::Server(e) | ClientError::Refused(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the failure means the daemon is gone (worth reconnecting).
    pub fn is_disconnect(&self) -> bool {
        matches!(self, ClientError::Connect { .. } | ClientError::Frame(_))
    }
}

/// The hello for the operator of `team`, reading the credential from the runtime dir.
pub fn operator_hello(tp: &TeamPaths) -> Result<Hello, ClientError> {
    let secret = agent_team_paths::read_secret_file(&tp.operator_secret).map_err(|source| {
        ClientError::Credential {
            path: tp.operator_secret.clone(),
            source,
        }
    })?;
    Ok(Hello {
        protocol: PROTOCOL_VERSION,
        team: tp.team.clone(),
        auth: Auth::Operator { secret },
        client: Some(format!("agent-team/{}", env!("CARGO_PKG_VERSION"))),
        start: false,
    })
}

/// The hello for an agent.
pub fn agent_hello(team: &str, name: &str, secret: &str, incarnation: u64) -> Hello {
    Hello {
        protocol: PROTOCOL_VERSION,
        team: team.to_string(),
        auth: Auth::Agent {
            name: name.to_string(),
            secret: secret.to_string(),
            incarnation,
        },
        client: Some(format!("agent-team-worker/{}", env!("CARGO_PKG_VERSION"))),
        start: false,
    }
}

/// A blocking connection to the daemon.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: BufWriter<UnixStream>,
    next_id: u64,
    pushes: VecDeque<Push>,
    welcome: Welcome,
    /// Whether [`Client::send`] gives a mutating request a fresh request id.
    request_ids: bool,
}

impl Client {
    /// Connects to `socket` and performs the handshake.
    pub fn connect(socket: &Path, hello: &Hello) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
            path: socket.to_path_buf(),
            source,
        })?;
        let read_half = stream.try_clone().map_err(|source| ClientError::Connect {
            path: socket.to_path_buf(),
            source,
        })?;
        let mut c = Client {
            reader: BufReader::with_capacity(frame::IO_BUFFER, read_half),
            writer: BufWriter::with_capacity(frame::IO_BUFFER, stream),
            next_id: 0,
            request_ids: true,
            pushes: VecDeque::new(),
            welcome: Welcome {
                protocol: 0,
                team: String::new(),
                identity: String::new(),
                role: String::new(),
                incarnation: 0,
                daemon_pid: 0,
                start: None,
                secret: None,
            },
        };
        frame::write(&mut c.writer, &ClientFrame::Hello(hello.clone()))?;
        c.writer.flush().map_err(FrameError::Io)?;
        match frame::read::<ServerFrame>(&mut c.reader)? {
            ServerFrame::Welcome(w) => c.welcome = w,
            ServerFrame::Error { error } => return Err(ClientError::Refused(error)),
            other => return Err(ClientError::Unexpected(format!("{other:?}"))),
        }
        Ok(c)
    }

    /// Connects as the team's operator.
    ///
    /// A daemon that starts (after a crash, or raced by another command) writes a new
    /// credential: one read just before that is refused, so when the file changed meanwhile
    /// the connection is tried again with the new one.
    pub fn operator(tp: &TeamPaths) -> Result<Self, ClientError> {
        let mut hello = operator_hello(tp)?;
        for _ in 0..50 {
            match Self::connect(&tp.socket, &hello) {
                Err(ClientError::Refused(e)) if e.code == ErrorCode::Unauthorized => {
                    let fresh = operator_hello(tp)?;
                    if fresh == hello {
                        return Err(ClientError::Refused(e));
                    }
                    hello = fresh;
                }
                other => return other,
            }
        }
        Self::connect(&tp.socket, &hello)
    }

    /// What the daemon said in its welcome.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// Makes one request and waits for its answer; pushes arriving meanwhile are kept.
    pub fn call(&mut self, req: Request) -> Result<Reply, ClientError> {
        let id = self.send(req)?;
        self.flush()?;
        self.wait(id)
    }

    /// Makes one request under request id `rid` and waits for its answer: the daemon applies
    /// a mutating request with a given id once and answers every repeat with the first reply,
    /// so a caller that lost its connection may send it again on a new one.
    pub fn call_with_rid(
        &mut self,
        req: Request,
        rid: Option<String>,
    ) -> Result<Reply, ClientError> {
        let id = self.send_with_rid(req, rid)?;
        self.flush()?;
        self.wait(id)
    }

    /// Sends requests without request ids from now on: a retry could then be applied twice.
    /// Only for measuring what remembering replies costs the daemon (`cargo xtask bench`).
    pub fn without_request_ids(mut self) -> Self {
        self.request_ids = false;
        self
    }

    /// Queues a request without waiting (pipelining); returns its id. Call [`Client::flush`].
    /// A mutating request carries a fresh request id.
    pub fn send(&mut self, req: Request) -> Result<u64, ClientError> {
        let rid = (self.request_ids && req.is_mutating()).then(new_rid);
        self.send_with_rid(req, rid)
    }

    /// Queues a request under request id `rid` (see [`Client::call_with_rid`]).
    pub fn send_with_rid(&mut self, req: Request, rid: Option<String>) -> Result<u64, ClientError> {
        self.next_id += 1;
        let id = self.next_id;
        frame::write(
            &mut self.writer,
            &ClientFrame::Request {
                id,
                body: req,
                rid,
                no_reply: false,
            },
        )?;
        Ok(id)
    }

    /// Sends queued requests.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        self.writer
            .flush()
            .map_err(|e| ClientError::Frame(FrameError::Io(e)))
    }

    /// Waits for the answer to request `id`.
    pub fn wait(&mut self, id: u64) -> Result<Reply, ClientError> {
        loop {
            match self.read_frame()? {
                ServerFrame::Response { id: rid, ok, error } if rid == id => {
                    return match (ok, error) {
                        (Some(r), _) => Ok(r),
                        (None, Some(e)) => Err(ClientError::Server(e)),
                        (None, None) => Err(ClientError::Unexpected("empty response".into())),
                    };
                }
                ServerFrame::Response { .. } => {}
                ServerFrame::Push(p) => self.pushes.push_back(p),
                ServerFrame::Error { error } => return Err(ClientError::Server(error)),
                ServerFrame::Welcome(_) => {}
            }
        }
    }

    /// Reads the next answer to any request (for pipelined use): `(id, outcome)`.
    pub fn next_response(&mut self) -> Result<(u64, Result<Reply, ErrorBody>), ClientError> {
        loop {
            match self.read_frame()? {
                ServerFrame::Response { id, ok, error } => {
                    let outcome = match (ok, error) {
                        (Some(r), _) => Ok(r),
                        (None, Some(e)) => Err(e),
                        (None, None) => Err(ErrorBody::new(ErrorCode::Internal, "empty response")),
                    };
                    return Ok((id, outcome));
                }
                ServerFrame::Push(p) => self.pushes.push_back(p),
                ServerFrame::Error { error } => return Err(ClientError::Server(error)),
                ServerFrame::Welcome(_) => {}
            }
        }
    }

    /// The next push, waiting at most `timeout` (`None` = forever) for it to start arriving.
    /// A frame that has started arriving is always read whole, so a timeout never splits one.
    pub fn next_push(&mut self, timeout: Option<Duration>) -> Result<Push, ClientError> {
        loop {
            if let Some(p) = self.pushes.pop_front() {
                return Ok(p);
            }
            if let Some(t) = timeout
                && self.reader.buffer().is_empty()
                && !self.readable_within(t)?
            {
                return Err(ClientError::Timeout);
            }
            match self.read_frame()? {
                ServerFrame::Push(p) => return Ok(p),
                ServerFrame::Error { error } => return Err(ClientError::Server(error)),
                _ => {}
            }
        }
    }

    fn readable_within(&self, t: Duration) -> Result<bool, ClientError> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        let deadline = std::time::Instant::now() + t;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let fd = self.reader.get_ref().as_fd();
            let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
            let ms = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32)
                .unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, ms) {
                Ok(n) => return Ok(n > 0),
                // A signal is not a timeout: wait out the rest of the time.
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(ClientError::Frame(FrameError::Io(e.into()))),
            }
        }
    }

    /// Makes several requests at once and gives their answers in the order asked: one wait
    /// for all instead of one each (the daemon answers a batch's requests together). Fails only
    /// when the connection does; each answer may be the daemon's error.
    pub fn call_all(
        &mut self,
        reqs: Vec<Request>,
    ) -> Result<Vec<Result<Reply, ClientError>>, ClientError> {
        let ids = reqs
            .into_iter()
            .map(|r| self.send(r))
            .collect::<Result<Vec<u64>, _>>()?;
        self.flush()?;
        let mut got: HashMap<u64, Result<Reply, ErrorBody>> = HashMap::new();
        while got.len() < ids.len() {
            let (id, outcome) = self.next_response()?;
            if ids.contains(&id) {
                got.insert(id, outcome);
            }
        }
        Ok(ids
            .iter()
            .map(|id| match got.remove(id) {
                Some(Ok(r)) => Ok(r),
                Some(Err(e)) => Err(ClientError::Server(e)),
                None => Err(ClientError::Unexpected("an answer went missing".into())),
            })
            .collect())
    }

    /// [`Client::call_all`] for requests whose last may end the connection (`shutdown`): the
    /// answers read before the daemon closed it are kept, the rest are errors.
    pub fn call_all_then_gone(&mut self, reqs: Vec<Request>) -> Vec<Result<Reply, ClientError>> {
        let mut ids = Vec::with_capacity(reqs.len());
        for r in reqs {
            match self.send(r) {
                Ok(id) => ids.push(id),
                Err(_) => break,
            }
        }
        let mut got: HashMap<u64, Result<Reply, ErrorBody>> = HashMap::new();
        if self.flush().is_ok() {
            while got.len() < ids.len() {
                match self.next_response() {
                    Ok((id, outcome)) if ids.contains(&id) => {
                        got.insert(id, outcome);
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        ids.iter()
            .map(|id| match got.remove(id) {
                Some(Ok(r)) => Ok(r),
                Some(Err(e)) => Err(ClientError::Server(e)),
                None => Err(ClientError::Frame(
                    agent_team_protocol::frame::FrameError::Closed,
                )),
            })
            .collect()
    }

    /// Every task (optionally of one status), fetching page after page.
    pub fn all_tasks(&mut self, status: Option<TaskStatus>) -> Result<Vec<Task>, ClientError> {
        self.tasks_after(status, None)
    }

    /// Every task (optionally of one status) after task `after`, page after page: the rest of
    /// a listing whose first page came another way ([`Client::call_all`]).
    pub fn tasks_after(
        &mut self,
        status: Option<TaskStatus>,
        after: Option<u64>,
    ) -> Result<Vec<Task>, ClientError> {
        self.pages_from(
            after,
            |after| Request::TaskList { status, after },
            |r| match r {
                Reply::Tasks { tasks, .. } => Some(tasks),
                _ => None,
            },
            |t| t.id,
        )
    }

    /// Every message of an agent's inbox, page after page.
    pub fn all_messages(
        &mut self,
        agent: &str,
        unread_only: bool,
    ) -> Result<Vec<Message>, ClientError> {
        let agent = agent.to_string();
        self.pages(
            |after| Request::Inbox {
                agent: Some(agent.clone()),
                unread_only,
                after,
            },
            |r| match r {
                Reply::Messages { messages, .. } => Some(messages),
                _ => None,
            },
            |m| m.id,
        )
    }

    /// Every permission request (pending only unless `all`), page after page.
    pub fn all_perms(&mut self, all: bool) -> Result<Vec<PermRequest>, ClientError> {
        self.pages(
            |after| Request::PermList { all, after },
            |r| match r {
                Reply::Perms { requests } => Some(requests),
                _ => None,
            },
            |p| p.id,
        )
    }

    /// Every event after `since`, page after page.
    pub fn all_events(&mut self, since: u64) -> Result<Vec<Envelope>, ClientError> {
        self.pages(
            |after| Request::Events {
                since: after.unwrap_or(since),
                limit: None,
            },
            |r| match r {
                Reply::Events { events } => Some(events),
                _ => None,
            },
            |e| e.seq,
        )
    }

    /// Every key of the team's memory (only those starting with `prefix`, if given), in key
    /// order, page after page.
    pub fn all_memory(&mut self, prefix: Option<&str>) -> Result<Vec<MemoryEntry>, ClientError> {
        let mut out: Vec<MemoryEntry> = Vec::new();
        loop {
            let req = Request::MemoryList {
                prefix: prefix.map(str::to_string),
                after: out.last().map(|e| e.key.clone()),
            };
            match self.call(req)? {
                Reply::MemoryEntries { entries } if entries.is_empty() => return Ok(out),
                Reply::MemoryEntries { entries } => out.extend(entries),
                other => return Err(ClientError::Unexpected(format!("{other:?}"))),
            }
        }
    }

    fn pages<T>(
        &mut self,
        req: impl Fn(Option<u64>) -> Request,
        items: impl Fn(Reply) -> Option<Vec<T>>,
        key: impl Fn(&T) -> u64,
    ) -> Result<Vec<T>, ClientError> {
        self.pages_from(None, req, items, key)
    }

    /// [`Client::pages`] from the item `after` on.
    fn pages_from<T>(
        &mut self,
        mut after: Option<u64>,
        req: impl Fn(Option<u64>) -> Request,
        items: impl Fn(Reply) -> Option<Vec<T>>,
        key: impl Fn(&T) -> u64,
    ) -> Result<Vec<T>, ClientError> {
        let mut out = Vec::new();
        loop {
            let reply = self.call(req(after))?;
            let last_page = reply.is_last_page();
            let page = items(reply)
                .ok_or_else(|| ClientError::Unexpected("wrong reply kind for a listing".into()))?;
            match page.last() {
                Some(last) => after = Some(key(last)),
                None => return Ok(out),
            }
            out.extend(page);
            if last_page {
                return Ok(out);
            }
        }
    }

    fn read_frame(&mut self) -> Result<ServerFrame, ClientError> {
        Ok(frame::read::<ServerFrame>(&mut self.reader)?)
    }

    /// Sets a limit on how long any single read may block.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), ClientError> {
        self.reader
            .get_ref()
            .set_read_timeout(timeout)
            .map_err(|e| ClientError::Frame(FrameError::Io(e)))
    }
}

/// Helpers that unwrap the reply kind a request is known to produce.
pub trait ReplyExt {
    /// The task of a `task` reply.
    fn task(self) -> Result<Task, ClientError>;
    /// The tasks of a `tasks` reply.
    fn tasks(self) -> Result<Vec<Task>, ClientError>;
    /// The messages of a `messages` reply.
    fn messages(self) -> Result<Vec<Message>, ClientError>;
    /// The agents of an `agents` reply.
    fn agents(self) -> Result<Vec<AgentInfo>, ClientError>;
}

impl ReplyExt for Result<Reply, ClientError> {
    fn task(self) -> Result<Task, ClientError> {
        match self? {
            Reply::Task { task } => Ok(task),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }
    fn tasks(self) -> Result<Vec<Task>, ClientError> {
        match self? {
            Reply::Tasks { tasks, .. } => Ok(tasks),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }
    fn messages(self) -> Result<Vec<Message>, ClientError> {
        match self? {
            Reply::Messages { messages, .. } => Ok(messages),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }
    fn agents(self) -> Result<Vec<AgentInfo>, ClientError> {
        match self? {
            Reply::Agents { agents } => Ok(agents),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A daemon stand-in on a fresh socket: welcomes one client and answers each `task_list`
    /// with `pages` in turn (then empty pages), saying `more` as given; returns the socket and
    /// a thread that ends with how many `task_list`s it was asked.
    fn paging_daemon(
        pages: Vec<Vec<u64>>,
        more: Option<bool>,
    ) -> (PathBuf, std::thread::JoinHandle<usize>) {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let socket = std::env::temp_dir().join(format!("at-pages-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let thread = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            let _hello: ClientFrame = frame::read(&mut reader).unwrap();
            let welcome = Welcome {
                protocol: PROTOCOL_VERSION,
                team: "t".into(),
                identity: "operator".into(),
                role: "operator".into(),
                incarnation: 0,
                daemon_pid: 1,
                start: None,
                secret: None,
            };
            frame::write(&mut writer, &ServerFrame::Welcome(welcome)).unwrap();
            let mut pages = pages.into_iter();
            let mut asked = 0;
            while let Ok(ClientFrame::Request { id, body, .. }) = frame::read(&mut reader) {
                let Request::TaskList { .. } = body else {
                    break;
                };
                asked += 1;
                let tasks = pages
                    .next()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|id| {
                        serde_json::from_value(serde_json::json!({
                            "id": id, "title": "t", "status": "pending", "created_by": "operator",
                            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
                        }))
                        .unwrap()
                    })
                    .collect();
                let reply = Reply::Tasks { tasks, more };
                frame::write(&mut writer, &ServerFrame::response(id, Ok(reply))).unwrap();
                writer.flush().unwrap();
            }
            asked
        });
        (socket, thread)
    }

    fn listed(pages: Vec<Vec<u64>>, more: Option<bool>) -> (usize, usize) {
        let (socket, daemon) = paging_daemon(pages, more);
        let hello = Hello {
            protocol: PROTOCOL_VERSION,
            team: "t".into(),
            auth: Auth::Operator { secret: "s".into() },
            client: None,
            start: false,
        };
        let mut c = Client::connect(&socket, &hello).unwrap();
        let tasks = c.all_tasks(None).unwrap();
        drop(c);
        let _ = std::fs::remove_file(&socket);
        (tasks.len(), daemon.join().unwrap())
    }

    #[test]
    fn a_listing_stops_at_the_page_that_says_it_is_the_last() {
        // (tasks read, `task_list`s asked)
        assert_eq!(listed(vec![vec![1, 2]], Some(false)), (2, 1));
        // An older daemon says nothing: the pager asks until a page comes back empty.
        assert_eq!(listed(vec![vec![1, 2]], None), (2, 2));
        assert_eq!(listed(vec![vec![1, 2], vec![3]], Some(true)), (3, 3));
    }

    /// Ids share the process's prefix and count up in lower-case hex, as `{:x}` writes.
    #[test]
    fn request_ids_are_the_prefix_and_a_hex_counter() {
        let ids: Vec<String> = (0..300).map(|_| new_rid()).collect();
        let prefix = &ids[0][..17];
        assert!(prefix.ends_with('-'), "{prefix}");
        assert!(prefix[..16].bytes().all(|b| b.is_ascii_hexdigit()));
        let mut last = None;
        for id in &ids {
            let (p, n) = id.split_at(17);
            assert_eq!(p, prefix);
            let v = u64::from_str_radix(n, 16).unwrap();
            assert_eq!(n, format!("{v:x}"), "{id}");
            assert!(last.is_none_or(|l| v > l), "{id} after {last:?}");
            last = Some(v);
        }
    }
}
