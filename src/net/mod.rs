//! Countersign at the network's edge: what it lets in and what it sends out.
//!
//! - [`connections`]: the HTTP/1 server's connection discipline (header
//!   and idle timeouts, a connection cap with accept back-pressure).
//! - [`rate_limit`]: requests per second per API key, and per source
//!   address for failed authentication, applied in the shared auth path.
//! - [`egress`]: where agent-chosen URLs (webhooks) may point.

pub mod connections;
pub mod egress;
pub mod rate_limit;
