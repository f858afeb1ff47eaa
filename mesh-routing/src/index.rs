//! Candidate indexes over a virtual host's match arms that keep first-match order.
//!
//! Each arm is filed under its most selective condition: an exact uri in a hash map, a uri
//! prefix in a byte trie, otherwise an exact header value in a per-header hash map, otherwise
//! in a short "always check" list. A lookup gathers the (ascending) arm lists that can match
//! and evaluates arms in list order, skipping any arm numbered after the best match so far,
//! so the result is the lowest-numbered matching arm: exactly Istio's first match.

use std::collections::HashMap;

use http::HeaderName;
use regex::RegexSet;

use crate::conditions::Conditions;
use crate::request::RequestFacts;
use crate::string_match::StringMatcher;

type ArmId = u32;
/// Exact values of one header, each with the arms indexed under it.
type HeaderIndex = (HeaderName, HashMap<Box<str>, Vec<ArmId>>);

#[derive(Debug, Clone, Default)]
pub(crate) struct ArmIndex {
    exact: HashMap<Box<str>, Vec<ArmId>>,
    exact_ci: HashMap<Box<str>, Vec<ArmId>>,
    prefix: Trie,
    prefix_ci: Trie,
    headers: Vec<HeaderIndex>,
    /// Arms whose uri is a regex, with one automaton over all of their patterns.
    regex: RegexArms,
    rest: Vec<ArmId>,
}

/// Regex uri arms. With many of them, a `RegexSet` finds every pattern that matches the path in
/// one pass instead of running each regex in turn; only those arms are then evaluated.
#[derive(Debug, Clone, Default)]
struct RegexArms {
    arms: Vec<ArmId>,
    set: Option<RegexSet>,
}

/// Below this many regex arms, trying each in order is as fast as the set.
const REGEX_SET_THRESHOLD: usize = 8;

impl RegexArms {
    fn finish(&mut self, patterns: &[&str]) {
        if self.arms.len() >= REGEX_SET_THRESHOLD {
            // The patterns compiled one by one already; a set too large for the size limit
            // falls back to trying each regex in order.
            self.set = RegexSet::new(patterns).ok();
        }
    }
}

impl ArmIndex {
    pub(crate) fn build<'a>(arms: impl Iterator<Item = &'a Conditions>) -> Self {
        let mut ix = Self::default();
        let mut regex_patterns = Vec::new();
        for (id, c) in arms.enumerate() {
            let id = id as ArmId;
            match (&c.uri, c.ignore_uri_case) {
                (Some(StringMatcher::Exact(p)), false) => {
                    ix.exact.entry(p.clone()).or_default().push(id)
                }
                (Some(StringMatcher::Exact(p)), true) => ix
                    .exact_ci
                    .entry(p.to_ascii_lowercase().into())
                    .or_default()
                    .push(id),
                (Some(StringMatcher::Prefix(p)), false) => ix.prefix.insert(p.as_bytes(), id),
                (Some(StringMatcher::Prefix(p)), true) => {
                    ix.prefix_ci.insert(p.to_ascii_lowercase().as_bytes(), id)
                }
                (Some(StringMatcher::Regex(r)), _) => {
                    ix.regex.arms.push(id);
                    regex_patterns.push(r.as_str());
                }
                (None | Some(StringMatcher::Any), _) => match c
                    .headers
                    .iter()
                    .find(|(_, m)| matches!(m, StringMatcher::Exact(_)))
                {
                    Some((name, StringMatcher::Exact(v))) => {
                        let slot = match ix.headers.iter().position(|(n, _)| n == name) {
                            Some(i) => i,
                            None => {
                                ix.headers.push((name.clone(), HashMap::new()));
                                ix.headers.len() - 1
                            }
                        };
                        ix.headers[slot].1.entry(v.clone()).or_default().push(id);
                    }
                    _ => ix.rest.push(id),
                },
            }
        }
        ix.regex.finish(&regex_patterns);
        ix
    }

    /// The lowest-numbered arm whose conditions all hold.
    pub(crate) fn first_match(&self, arms: &[Conditions], req: &RequestFacts<'_>) -> Option<ArmId> {
        let mut best = ArmId::MAX;
        let mut scan = |list: &[ArmId]| {
            for &id in list {
                if id >= best {
                    break;
                }
                if arms[id as usize].matches(req) {
                    best = id;
                    break;
                }
            }
        };
        if let Some(list) = self.exact.get(req.path) {
            scan(list);
        }
        self.prefix.walk(req.path.as_bytes(), &mut scan);
        if !self.exact_ci.is_empty() || !self.prefix_ci.is_empty() {
            let lower = req.path_lower();
            if let Some(list) = self.exact_ci.get(lower) {
                scan(list);
            }
            self.prefix_ci.walk(lower.as_bytes(), &mut scan);
        }
        for (name, values) in &self.headers {
            for v in req.headers.get_all(name) {
                if let Some(list) = std::str::from_utf8(v.as_bytes())
                    .ok()
                    .and_then(|v| values.get(v))
                {
                    scan(list);
                }
            }
        }
        match &self.regex.set {
            Some(set) => {
                for i in set.matches(req.path).iter() {
                    scan(&self.regex.arms[i..=i]);
                }
            }
            None => scan(&self.regex.arms),
        }
        scan(&self.rest);
        (best != ArmId::MAX).then_some(best)
    }
}

/// A byte trie whose nodes hold the arms whose prefix ends there.
#[derive(Debug, Clone)]
struct Trie {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// Sorted by byte.
    children: Vec<(u8, u32)>,
    arms: Vec<ArmId>,
}

impl Default for Trie {
    fn default() -> Self {
        Self {
            nodes: vec![Node::default()],
        }
    }
}

impl Trie {
    fn is_empty(&self) -> bool {
        self.nodes.len() == 1 && self.nodes[0].arms.is_empty()
    }

    fn insert(&mut self, key: &[u8], id: ArmId) {
        let mut at = 0usize;
        for &b in key {
            at = match self.nodes[at]
                .children
                .binary_search_by_key(&b, |(c, _)| *c)
            {
                Ok(i) => self.nodes[at].children[i].1 as usize,
                Err(i) => {
                    let new = self.nodes.len() as u32;
                    self.nodes.push(Node::default());
                    self.nodes[at].children.insert(i, (b, new));
                    new as usize
                }
            };
        }
        self.nodes[at].arms.push(id);
    }

    /// Calls `f` with the arm list of every node on `key`'s path (every prefix of `key`).
    fn walk(&self, key: &[u8], f: &mut impl FnMut(&[ArmId])) {
        let mut at = 0usize;
        let mut i = 0;
        loop {
            let node = &self.nodes[at];
            if !node.arms.is_empty() {
                f(&node.arms);
            }
            let Some(&b) = key.get(i) else { return };
            match node.children.binary_search_by_key(&b, |(c, _)| *c) {
                Ok(j) => at = node.children[j].1 as usize,
                Err(_) => return,
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trie_reports_every_prefix_on_the_path() {
        let mut t = Trie::default();
        t.insert(b"/", 3);
        t.insert(b"/a", 1);
        t.insert(b"/ab", 0);
        t.insert(b"/b", 2);
        let mut seen = Vec::new();
        t.walk(b"/abc", &mut |l| seen.extend_from_slice(l));
        assert_eq!(seen, vec![3, 1, 0]);
    }
}
