//! Pure domain code: no I/O. Principals, requests, policy and the decision
//! rules every channel calls.

pub mod audit_command;
pub mod escalation;
pub mod policy;
pub mod principal;
pub mod replay;
pub mod request;
pub mod rules;

pub use policy::{ApprovalSpec, Effect, OnExpiry, Policy};
pub use principal::Principal;
pub use request::{Action, PayloadHash, RequestContent, Resource, Risk, Status, Verdict};
