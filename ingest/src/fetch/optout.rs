//! Opt-outs: reading `X-Robots-Tag` response headers the way crawlers do.
//!
//! A header value is a comma-separated list of directives, optionally scoped to one user agent
//! (`X-Robots-Tag: googlebot: noindex, nofollow`). Following Google's robots documentation:
//!
//! - a directive without an agent applies to every agent;
//! - `<agent>: d1, d2` applies `d1` and `d2` to that agent only, until the next `<agent>:` prefix;
//! - directives that carry a value (`unavailable_after: <date>`, `max-snippet: 20`,
//!   `max-image-preview: large`, `max-video-preview: 0`) are not agent prefixes;
//! - `none` means `noindex, nofollow`;
//! - a response may carry several `X-Robots-Tag` headers; each is read on its own.
//!
//! [`OptOutRules::check`] returns the first matching directive when one of the configured
//! directives applies to no agent or to one of the configured agent tokens.

use reqwest::header::HeaderMap;

/// Directives whose value follows a colon; their name is not a user-agent token.
const VALUED_DIRECTIVES: &[&str] = &[
    "unavailable_after",
    "max-snippet",
    "max-image-preview",
    "max-video-preview",
];

/// The response header carrying robots directives.
pub const X_ROBOTS_TAG: &str = "x-robots-tag";

/// Which directives mean "do not use", and for which agent tokens.
#[derive(Debug, Clone, Default)]
pub struct OptOutRules {
    directives: Vec<String>,
    agents: Vec<String>,
}

/// An opt-out found in a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptOut {
    /// The directive, lower-cased (`noai`).
    pub directive: String,
    /// The agent the directive was scoped to, lower-cased; `None` when it applies to all agents.
    pub agent: Option<String>,
    /// The whole header value, for the rejection detail.
    pub header: String,
}

impl OptOutRules {
    /// Rules for these directives and agent tokens (compared case-insensitively).
    pub fn new(directives: &[String], agents: &[String]) -> Self {
        let lower = |v: &[String]| v.iter().map(|s| s.trim().to_ascii_lowercase()).collect();
        Self {
            directives: lower(directives),
            agents: lower(agents),
        }
    }

    /// The first opt-out that applies to us in `headers`, if any.
    pub fn check(&self, headers: &HeaderMap) -> Option<OptOut> {
        headers.get_all(X_ROBOTS_TAG).iter().find_map(|value| {
            // Non-UTF-8 bytes cannot form a directive we look for; read what decodes.
            let text = String::from_utf8_lossy(value.as_bytes());
            self.check_value(&text)
        })
    }

    /// The first opt-out that applies to us in one `X-Robots-Tag` header value.
    pub fn check_value(&self, value: &str) -> Option<OptOut> {
        let mut agent: Option<String> = None;
        for item in value.split(',') {
            let item = item.trim();
            let directive = match item.split_once(':') {
                Some((name, rest)) if !is_valued_directive(name) => {
                    agent = Some(name.trim().to_ascii_lowercase());
                    rest.trim()
                }
                _ => item,
            };
            let directive = directive.to_ascii_lowercase();
            let applies = agent
                .as_ref()
                .is_none_or(|a| self.agents.iter().any(|t| t == a));
            if applies && self.is_opt_out(&directive) {
                return Some(OptOut {
                    directive,
                    agent: agent.clone(),
                    header: value.trim().to_owned(),
                });
            }
        }
        None
    }

    fn is_opt_out(&self, directive: &str) -> bool {
        let listed = |d: &str| self.directives.iter().any(|x| x == d);
        listed(directive) || (directive == "none" && listed("noindex"))
    }
}

fn is_valued_directive(name: &str) -> bool {
    let name = name.trim();
    VALUED_DIRECTIVES
        .iter()
        .any(|d| d.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn rules() -> OptOutRules {
        let d = ["noai", "noimageai", "noindex", "noimageindex"].map(String::from);
        let a = ["flipstream", "img2dataset"].map(String::from);
        OptOutRules::new(&d, &a)
    }

    fn directive(value: &str) -> Option<String> {
        rules().check_value(value).map(|o| o.directive)
    }

    #[test]
    fn global_directives_apply() {
        assert_eq!(directive("noai"), Some("noai".into()));
        assert_eq!(directive("NoImageAI"), Some("noimageai".into()));
        assert_eq!(directive("nofollow, noindex"), Some("noindex".into()));
        assert_eq!(directive(" noimageindex "), Some("noimageindex".into()));
        assert_eq!(directive("none"), Some("none".into()));
        assert_eq!(directive("nofollow"), None);
        assert_eq!(directive("all"), None);
        assert_eq!(directive(""), None);
    }

    #[test]
    fn agent_scoped_directives_apply_only_to_our_agents() {
        let o = rules().check_value("flipstream: noai").unwrap();
        assert_eq!(
            (o.directive.as_str(), o.agent.as_deref()),
            ("noai", Some("flipstream"))
        );
        assert_eq!(
            directive("img2dataset: noimageai"),
            Some("noimageai".into())
        );
        assert_eq!(directive("FlipStream:NOAI"), Some("noai".into()));
        assert_eq!(directive("googlebot: noai"), None);
        assert_eq!(directive("googlebot: noindex, nofollow"), None);
        // The scope runs until the next agent prefix.
        assert_eq!(
            directive("googlebot: nofollow, flipstream: noindex"),
            Some("noindex".into())
        );
        assert_eq!(directive("flipstream: nofollow, googlebot: noai"), None);
    }

    #[test]
    fn valued_directives_are_not_agents() {
        assert_eq!(
            directive("unavailable_after: 25 Jun 2010 15:00:00 PST, noai"),
            Some("noai".into())
        );
        assert_eq!(directive("max-image-preview: large"), None);
        assert_eq!(directive("googlebot: max-snippet: 20, noindex"), None);
    }

    #[test]
    fn every_header_is_read() {
        let mut headers = HeaderMap::new();
        headers.append(X_ROBOTS_TAG, HeaderValue::from_static("googlebot: noai"));
        assert_eq!(rules().check(&headers), None);
        headers.append(X_ROBOTS_TAG, HeaderValue::from_static("img2dataset: noai"));
        assert_eq!(
            rules().check(&headers).map(|o| o.header),
            Some("img2dataset: noai".into())
        );
        let custom = OptOutRules::new(&["nocrawl".into()], &["mybot".into()]);
        assert_eq!(custom.check(&headers), None);
        assert!(custom.check_value("mybot: nocrawl").is_some());
    }
}
