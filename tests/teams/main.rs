//! Black-box tests of the Microsoft Teams channel: Countersign on a loopback
//! port, a fake Bot Framework (OpenID metadata, JWKS, token endpoint, Bot
//! Connector) on another, JWTs minted with checked-in test keys.

#[path = "../api/helpers.rs"]
mod helpers;

mod bot;

mod audit;
mod cards;
mod checkpoints;
mod conversations;
mod decisions;
mod delivery;
mod escalation;
mod inert;
mod kit;
mod package;
mod tokens;
