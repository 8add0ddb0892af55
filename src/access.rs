//! Access policy: `[[access.rules]]` grant (or deny) models and scopes to
//! principals chosen by role, username, attribute or sign-in method. The
//! smallest form that covers llama-stack's access-policy cases:
//!
//! ```toml
//! # everyone whose `teams` attribute contains "ml" may call any OpenAI model
//! [[access.rules]]
//! match = { attributes = { teams = ["ml"] } }
//! models = ["openai/*"]
//!
//! # members of the IdP group "platform" (mapped to roles) get the admin scope
//! [[access.rules]]
//! match = { roles = ["platform"], methods = ["jwks"] }
//! scopes = ["admin"]
//!
//! # nobody reached through GitHub tokens may call the expensive models
//! [[access.rules]]
//! effect = "deny"
//! match = { methods = ["github"] }
//! models = ["openai/gpt-4o", "anthropic/*"]
//! ```
//!
//! A rule matches a principal when every condition it gives holds (any value
//! of a list may match; an empty `match` matches everyone). `allow` rules add
//! their scopes and models; `deny` rules take them away and always win. With
//! no rule naming models, every model is open (still narrowed by a token's
//! own `models` list).

use crate::auth::{Principal, Scope, Scopes, Via};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// Who a rule is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Match {
    pub roles: Vec<String>,
    pub users: Vec<String>,
    pub methods: Vec<String>,
    pub attributes: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub effect: Effect,
    pub who: Match,
    pub models: Vec<String>,
    pub scopes: Vec<Scope>,
}

/// Sign-in methods a rule may name.
pub const METHODS: [&str; 7] = [
    "session",
    "token",
    "local",
    "jwks",
    "introspection",
    "github",
    "custom",
];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    pub rules: Vec<Rule>,
}

fn method(p: &Principal) -> &'static str {
    match p.via {
        Via::Session { .. } => "session",
        Via::Token { .. } => "token",
        Via::LocalAnonymous => "local",
        Via::External { method } => method,
    }
}

impl Match {
    fn matches(&self, p: &Principal) -> bool {
        (self.roles.is_empty() || self.roles.iter().any(|r| p.roles.contains(r)))
            && (self.users.is_empty()
                || self
                    .users
                    .iter()
                    .any(|u| u.eq_ignore_ascii_case(&p.username)))
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == method(p)))
            && self.attributes.iter().all(|(k, wanted)| {
                p.attributes
                    .get(k)
                    .is_some_and(|have| wanted.iter().any(|w| have.contains(w)))
            })
    }
}

/// `*` matches any run of characters; everything else is literal.
pub fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let tail: Vec<&str> = parts.collect();
    if tail.is_empty() {
        return rest.is_empty();
    }
    for (i, part) in tail.iter().enumerate() {
        if i == tail.len() - 1 {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

impl AccessPolicy {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The principal's scopes after the rules: grants added, denials removed.
    pub fn scopes_for(&self, p: &Principal) -> Scopes {
        let mut scopes = p.scopes;
        let matching = self
            .rules
            .iter()
            .filter(|r| !r.scopes.is_empty() && r.who.matches(p));
        let (allow, deny): (Vec<&Rule>, Vec<&Rule>) =
            matching.partition(|r| r.effect == Effect::Allow);
        for r in allow {
            for s in &r.scopes {
                scopes = scopes.with(*s);
            }
        }
        for r in deny {
            for s in &r.scopes {
                scopes = scopes.without(*s);
            }
        }
        scopes
    }

    /// Whether the principal may call `model` (`provider/model` or an alias).
    pub fn may_call(&self, p: &Principal, model: &str) -> bool {
        if let Some(own) = &p.models {
            if !own.iter().any(|m| glob(m, model)) {
                return false;
            }
        }
        let naming: Vec<&Rule> = self.rules.iter().filter(|r| !r.models.is_empty()).collect();
        if naming.is_empty() {
            return true;
        }
        let covers = |r: &&Rule| r.who.matches(p) && r.models.iter().any(|m| glob(m, model));
        let allowed = naming
            .iter()
            .filter(|r| r.effect == Effect::Allow)
            .any(covers);
        let denied = naming
            .iter()
            .filter(|r| r.effect == Effect::Deny)
            .any(covers);
        allowed && !denied
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn principal(roles: &[&str], attrs: &[(&str, &[&str])], via: Via) -> Principal {
        let mut p = Principal::local_admin();
        p.username = "ann".into();
        p.roles = roles.iter().map(|s| s.to_string()).collect();
        p.attributes = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect();
        p.via = via;
        p.scopes = Scopes::SIGNED_IN;
        p
    }

    fn rule(effect: Effect, who: Match, models: &[&str], scopes: &[Scope]) -> Rule {
        Rule {
            effect,
            who,
            models: models.iter().map(|s| s.to_string()).collect(),
            scopes: scopes.to_vec(),
        }
    }

    #[test]
    fn globs() {
        assert!(glob("openai/*", "openai/gpt-4o"));
        assert!(!glob("openai/*", "groq/llama"));
        assert!(glob("*", "anything"));
        assert!(glob("*/gpt-*-mini", "openai/gpt-4o-mini"));
        assert!(!glob("openai/gpt-4o", "openai/gpt-4o-mini"));
        assert!(glob("a*b*c", "aXbYc") && !glob("a*b*c", "aXcYb"));
    }

    #[test]
    fn attribute_rules_grant_models_and_deny_wins() {
        let ml = Match {
            attributes: [("teams".to_string(), vec!["ml".to_string()])].into(),
            ..Default::default()
        };
        let policy = AccessPolicy {
            rules: vec![
                rule(Effect::Allow, ml, &["openai/*"], &[]),
                rule(
                    Effect::Deny,
                    Match {
                        methods: vec!["github".into()],
                        ..Default::default()
                    },
                    &["openai/gpt-4o"],
                    &[],
                ),
            ],
        };
        let ann = principal(
            &[],
            &[("teams", &["ml", "web"])],
            Via::External { method: "jwks" },
        );
        assert!(policy.may_call(&ann, "openai/gpt-4o"));
        assert!(!policy.may_call(&ann, "anthropic/claude"));
        let gh = principal(
            &[],
            &[("teams", &["ml"])],
            Via::External { method: "github" },
        );
        assert!(
            !policy.may_call(&gh, "openai/gpt-4o") && policy.may_call(&gh, "openai/gpt-4o-mini")
        );
        let web = principal(
            &[],
            &[("teams", &["web"])],
            Via::External { method: "jwks" },
        );
        assert!(!policy.may_call(&web, "openai/gpt-4o"));
        // A token's own list narrows further.
        let mut narrowed = ann.clone();
        narrowed.models = Some(vec!["openai/gpt-4o-mini".to_string()].into());
        assert!(
            !policy.may_call(&narrowed, "openai/gpt-4o")
                && policy.may_call(&narrowed, "openai/gpt-4o-mini")
        );
        // No rule names models: everything is open.
        assert!(AccessPolicy::default().may_call(&web, "x/y"));
    }

    #[test]
    fn scope_grants_and_denials() {
        let policy = AccessPolicy {
            rules: vec![
                rule(
                    Effect::Allow,
                    Match {
                        roles: vec!["platform".into()],
                        ..Default::default()
                    },
                    &[],
                    &[Scope::Admin],
                ),
                rule(
                    Effect::Deny,
                    Match {
                        users: vec!["ANN".into()],
                        methods: vec!["token".into()],
                        ..Default::default()
                    },
                    &[],
                    &[Scope::Write],
                ),
            ],
        };
        let p = principal(&["platform"], &[], Via::External { method: "jwks" });
        assert!(policy.scopes_for(&p).allows(Scope::Admin));
        let t = principal(&[], &[], Via::Token { id: "x".into() });
        let s = policy.scopes_for(&t);
        assert!(s.allows(Scope::Read) && !s.allows(Scope::Write));
    }

    proptest! {
        #[test]
        fn glob_never_panics(p in "[a-z*/]{0,12}", t in "[a-z/]{0,16}") {
            let _ = glob(&p, &t);
            prop_assert!(glob("*", &t));
            prop_assert!(glob(&t, &t) || t.contains('*'));
        }
    }
}
