//! Sessions: the encrypted KV cache of a generation, kept in a directory between decode steps
//! (issue 9). Work in progress.

/// A session directory.
#[derive(Debug)]
pub struct Session;

/// Why a session cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {}

/// What a session is bound to.
#[derive(Debug)]
pub struct SessionIdentity;
