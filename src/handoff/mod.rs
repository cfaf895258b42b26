//! A handshake and what takes its records afterwards, in one place: [`unbuffered`] drives
//! every handshake through rustls' unbuffered API (the socket is left exactly at the first
//! record after it) and keeps rustls' records where the kernel does not take them; [`ktls`]
//! hands the keys to kernel TLS through rustls' `KernelConnection`; [`control`] reads the
//! control records (alerts, KeyUpdates, tickets) the kernel hands back.

pub mod control;
pub mod ktls;
pub mod unbuffered;
