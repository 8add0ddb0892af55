//! Black-box tests: the real actors, sled store and HTTP stack.

mod account;
mod cli;
mod config;
mod durability;
mod embed;
mod health;
mod helpers;
mod login;
mod oauth_state;
mod resilience;
mod sessions;
mod tokens;
