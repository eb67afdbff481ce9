//! The channel kit: what every chat platform does the same way, written
//! once so Slack, Teams (and any channel to come) cannot drift apart.
//!
//! A platform keeps only what is its own: wire types, authentication, its
//! API client, its escaping rules and its templates. Everything that
//! decides *what* an approver or auditor is shown, or *whether* something
//! counts, is here:
//!
//! - [`binding`]: a click is bound to the payload it was made on, and a
//!   refused click is audited (`decision.blocked`) the same way everywhere;
//! - [`identity`]: chat account → principal (operator link, then a TTL
//!   cache that also remembers "unmapped" for a minute, then the platform's
//!   e-mail lookup); an unmapped click is audited with a principal-shaped
//!   actor, `unmapped:<platform>:<account>`;
//! - [`delivery`]: the outbox's post / update deliverers over a small
//!   [`delivery::ChatApi`] trait and one [`delivery::DeliveryError`]: a post
//!   is never repeated once its message exists, and an update with a newer
//!   one queued behind it is skipped;
//! - [`decide`]: "decide and explain", a click turned into `App::decide`
//!   and a sentence for the clicker;
//! - [`audit_answer`]: "answer an audit command": who asks, the grammar, a
//!   mentioned person resolved only for someone allowed to ask;
//! - [`view`] and [`event`]: one view of a request and of an audit event
//!   (which facts, in which order, cut to the shared limits of
//!   [`crate::channels::text`]); a platform escapes and lays them out;
//! - [`login`]: `audit login`, a one-time sign-in link to the web console;
//! - [`notice`]: the outcome notice to the human an agent acted for;
//! - [`escalation_notice`]: the notice in `escalate_channel` /
//!   `escalate_conversation` when a request escalates;
//! - [`templates`]: one template loader (compiled-in defaults, the
//!   override directory, the start-up render of every template).

pub mod audit_answer;
pub mod binding;
pub mod console_link;
pub mod decide;
pub mod delivery;
pub mod escalation_notice;
pub mod event;
pub mod identity;
pub mod login;
pub mod notice;
pub mod samples;
pub mod templates;
pub mod view;
