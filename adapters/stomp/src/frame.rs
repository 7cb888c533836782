//! A STOMP frame as the adapter sees it: command, headers in wire order, body bytes.

use bytes::Bytes;

/// STOMP protocol versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V10,
    V11,
    V12,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V10 => "1.0",
            Version::V11 => "1.1",
            Version::V12 => "1.2",
        }
    }

    /// The highest version both sides accept, from CONNECT's `accept-version` (absent: 1.0).
    pub fn negotiate(accept_version: Option<&str>) -> Option<Version> {
        let Some(list) = accept_version else { return Some(Version::V10) };
        let offered = |v: &str| list.split(',').any(|x| x.trim() == v);
        [Version::V12, Version::V11, Version::V10].into_iter().find(|v| offered(v.as_str()))
    }

    /// 1.1 and later escape `\n`, `:` and `\` in header names and values (1.2 also `\r`).
    pub fn escapes(self) -> bool {
        self >= Version::V11
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    pub command: String,
    /// In wire order, repeats included; `header` returns the first (the one that counts).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Frame {
    pub fn new(command: &str) -> Frame {
        Frame { command: command.to_string(), ..Default::default() }
    }

    pub fn with(mut self, name: &str, value: impl Into<String>) -> Frame {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> Frame {
        self.body = body.into();
        self
    }

    /// The first header of that name (STOMP: repeated headers after the first are ignored).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Headers without repeats, first occurrence kept, in wire order.
    pub fn distinct_headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .enumerate()
            .filter(|(i, (k, _))| !self.headers[..*i].iter().any(|(seen, _)| seen == k))
            .map(|(_, (k, v))| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_negotiation_picks_the_highest_common_one() {
        assert_eq!(Version::negotiate(None), Some(Version::V10));
        assert_eq!(Version::negotiate(Some("1.0,1.1,1.2")), Some(Version::V12));
        assert_eq!(Version::negotiate(Some("1.1")), Some(Version::V11));
        assert_eq!(Version::negotiate(Some("2.0")), None);
    }

    #[test]
    fn the_first_of_repeated_headers_wins() {
        let f = Frame::new("SEND").with("a", "1").with("b", "2").with("a", "3");
        assert_eq!(f.header("a"), Some("1"));
        assert_eq!(f.distinct_headers().collect::<Vec<_>>(), vec![("a", "1"), ("b", "2")]);
    }
}
