//! Countersign: an approval gate for autonomous systems.
//!
//! An agent asks (`POST /v1/approvals`), the policy decides whether people
//! must approve, people other than the requester decide (API, Slack,
//! Teams), the agent learns the answer at once, and every step lands in a
//! hash-chained, signed audit trail.
//!
//! Data flows through the modules in this order: `http` (and the chat
//! `channels`) → `service` (which calls the pure `domain` rules) → `store`
//! (one writer, group commit, audit chain, outbox rows) → `outbox` (the
//! delivery worker: webhooks, chat messages).

pub mod agent_cli;
pub mod channels;
pub mod checkpoint_sinks;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod console;
pub mod domain;
pub mod error;
pub mod http;
pub mod json;
pub mod keyfile;
pub mod mcp;
pub mod net;
pub mod outbox;
pub mod permits;
pub mod service;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod waiters;
pub mod webhook;
