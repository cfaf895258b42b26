//! The two ends of a tunnel and what they carry: [`client`] (`connect`, the donor) and
//! [`server`] (`listen`, the joiner) take plans the native CLI and the front-ends build
//! alike; [`session`] is one TLS connection around the relay (handshake deadline, summary,
//! error wording); [`gate`] is the listener's door while it waits for its verified peer;
//! [`stdio`] and [`exec`] are the plaintext sides; [`stripes`] carries one one-way stream
//! over several connections when both ends are sst-tunnel.

pub mod client;
pub mod exec;
pub mod gate;
pub mod resume;
pub mod server;
pub mod session;
pub mod stdio;
pub mod stripes;
