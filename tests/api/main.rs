//! Black-box tests: the real actors, sled store and HTTP stack.

mod account;
mod admin;
mod bearer;
mod browser;
mod cli;
mod config;
mod csrf;
mod durability;
mod embed;
mod fakes;
mod gateway;
mod gateway_faults;
mod github;
mod health;
mod helpers;
mod login;
mod oauth_state;
mod oidc;
mod oidc_signin;
mod oidc_smoke;
mod postgres;
mod resilience;
mod sdk;
mod sessions;
mod tokens;
mod upstream;
