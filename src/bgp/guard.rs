//! The renderer's last checks. Configuration validation already refuses text that would leave
//! its slot (`crate::config::frr_text`); these do not trust it, so a field added later without
//! a rule, or a rule with a hole, fails here, before frr-agent applies anything, instead of
//! reaching FRR as a command nobody wrote:
//! - [`check_view`]: every string of the view model is one word, or words apart by single
//!   spaces, so no value can start a line or add one (whatever field it is in, new ones too);
//! - [`check`]: every line of the rendered text is one the template lays out, word for word, in
//!   the context it stands in, so an edit of the template cannot open a way either.
//!
//! FRR's reading is mirrored: lines split on `\n`, words on spaces, tabs and CRs; indentation
//! carries no meaning; a line whose first word starts with `!` is a comment.

/// One line shape: words, where `*` is any one word, `#` a decimal number and `+` one or more
/// words (community lists).
type Shape = &'static str;

const TOP: &[Shape] = &[
    "frr defaults traditional",
    "hostname *",
    "log stdout",
    "log stdout *",
    "log timestamp precision #",
    "bgp route-map delay-timer #",
    "ip nht resolve-via-default",
    "ipv6 nht resolve-via-default",
];
const ROUTER: &[Shape] = &[
    "bgp router-id *",
    "no bgp ebgp-requires-policy",
    "no bgp default ipv4-unicast",
    "bgp graceful-restart preserve-fw-state",
    "no bgp network import-check",
    "neighbor * interface remote-as *",
    "neighbor * remote-as *",
    "neighbor * local-as # no-prepend replace-as",
    "neighbor * bfd",
    "neighbor * bfd profile *",
    "neighbor * password *",
    "neighbor * port #",
    "neighbor * ebgp-multihop #",
    "neighbor * disable-connected-check",
    "neighbor * update-source *",
    "neighbor * timers # #",
    "neighbor * timers connect #",
    "neighbor * graceful-restart",
];
const ADDRESS_FAMILY: &[Shape] = &[
    "network * route-map *",
    "neighbor * activate",
    "neighbor * route-map * in",
    "neighbor * route-map * out",
];
const ROUTE_MAP: &[Shape] = &[
    "set tag #",
    "match tag #",
    "set community + additive",
    "set large-community + additive",
    "set local-preference #",
];
const BFD_PROFILE: &[Shape] = &[
    "detect-multiplier #",
    "transmit-interval #",
    "receive-interval #",
    "passive-mode",
    "echo-mode",
    "echo transmit-interval #",
    "echo receive-interval #",
    "minimum-ttl #",
];

/// Fields whose value is exactly one word where the template puts it.
const ONE_WORD: &[&str] = &["hostname", "vrf", "router_id", "target", "id", "name", "address", "profile"];

/// Ok when no string in `view` (a serialised view model) could leave its place in a line;
/// otherwise the path of the first that could. The value is not shown: it may be a password.
pub fn check_view(view: &serde_json::Value) -> Result<(), String> {
    fn walk(v: &serde_json::Value, path: &mut String, key: &str) -> Result<(), String> {
        use crate::config::frr_text::is_word;
        match v {
            serde_json::Value::String(s) => {
                let fine = if ONE_WORD.contains(&key) { is_word(s) } else { s.split(' ').all(is_word) };
                // An empty log level means FRR's default: nothing is laid out for it.
                if fine || (key == "log_level" && s.is_empty()) {
                    Ok(())
                } else {
                    Err(format!("{path} is not text FRR reads as the words it is meant to be"))
                }
            }
            serde_json::Value::Array(items) => items.iter().enumerate().try_for_each(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let r = walk(item, path, key);
                path.truncate(len);
                r
            }),
            serde_json::Value::Object(fields) => fields.iter().try_for_each(|(k, item)| {
                let len = path.len();
                path.push_str(&format!(".{k}"));
                let r = walk(item, path, k);
                path.truncate(len);
                r
            }),
            _ => Ok(()),
        }
    }
    walk(view, &mut String::from("frr"), "")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    Top,
    Router,
    AddressFamily,
    RouteMap,
    Bfd,
    BfdProfile,
    BfdPeer,
}

fn word_fits(shape: &str, word: &str) -> bool {
    match shape {
        "*" => true,
        "#" => word.bytes().all(|b| b.is_ascii_digit()),
        literal => literal == word,
    }
}

fn fits(shape: &[&str], words: &[&str]) -> bool {
    match (shape.split_first(), words.split_first()) {
        (None, None) => true,
        (Some((&"+", rest)), Some((_, more))) => fits(rest, more) || fits(shape, more),
        (Some((s, rest)), Some((w, more))) => word_fits(s, w) && fits(rest, more),
        _ => false,
    }
}

fn any_fits(shapes: &[Shape], words: &[&str]) -> bool {
    shapes.iter().any(|s| fits(&s.split(' ').collect::<Vec<_>>(), words))
}

/// The context a line opens from `at`, if it opens one.
fn opens(at: Context, words: &[&str]) -> Option<Context> {
    let open = |shape: &str| fits(&shape.split(' ').collect::<Vec<_>>(), words);
    match at {
        Context::Top if open("router bgp #") || open("router bgp # vrf *") => Some(Context::Router),
        Context::Top if open("route-map * permit #") || open("route-map * deny #") => Some(Context::RouteMap),
        Context::Top if open("bfd") => Some(Context::Bfd),
        Context::Router if open("address-family ipv4 unicast") || open("address-family ipv6 unicast") => {
            Some(Context::AddressFamily)
        }
        Context::Bfd if open("profile *") => Some(Context::BfdProfile),
        Context::Bfd if open("peer *") || open("peer * vrf *") => Some(Context::BfdPeer),
        _ => None,
    }
}

fn allowed(at: Context) -> &'static [Shape] {
    match at {
        Context::Top => TOP,
        Context::Router => ROUTER,
        Context::AddressFamily => ADDRESS_FAMILY,
        Context::RouteMap => ROUTE_MAP,
        Context::Bfd => &[],
        Context::BfdProfile => BFD_PROFILE,
        Context::BfdPeer => &["profile *"],
    }
}

/// Ok when every line of `text` is one the template lays out where it stands; otherwise the
/// first line that is not (its number, first two words and word count).
pub fn check(text: &str) -> Result<(), String> {
    let mut stack = vec![Context::Top];
    for (n, line) in text.split('\n').enumerate() {
        let words: Vec<&str> = line.split([' ', '\t', '\r']).filter(|w| !w.is_empty()).collect();
        let at = *stack.last().unwrap_or(&Context::Top);
        let fine = match words.as_slice() {
            [] => true,
            [w] if *w == "!" => true,
            ["exit-address-family"] => at == Context::AddressFamily && stack.pop().is_some(),
            ["exit"] => at != Context::Top && at != Context::AddressFamily && stack.pop().is_some(),
            _ => match opens(at, &words) {
                Some(inner) => {
                    stack.push(inner);
                    true
                }
                None => any_fits(allowed(at), &words),
            },
        };
        // Anything but the bare separator starting with `!` or `#` would be a comment to FRR.
        let commented = words.first().is_some_and(|w| *w != "!" && w.starts_with(['!', '#']));
        if !fine || commented || line.chars().any(|c| c.is_control() && c != '\t' && c != '\r') {
            // Two words name the line without showing a value that may be a password.
            let shown: Vec<&str> = words.iter().take(2).copied().collect();
            return Err(format!(
                "line {} ({:?}…, {} words) is not a line ferrolb's template lays out there",
                n + 1,
                shown.join(" "),
                words.len()
            ));
        }
    }
    if stack != [Context::Top] {
        return Err("a context is left open at the end".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "frr defaults traditional\nhostname n1\nlog stdout informational\n!\nrouter bgp 64512 vrf red\n \
        no bgp default ipv4-unicast\n neighbor 192.0.2.1 remote-as 64500\n neighbor 192.0.2.1 password k!#x\n !\n \
        address-family ipv4 unicast\n  network 198.51.100.1/32 route-map ferrolb-class-7\n  neighbor 192.0.2.1 activate\n \
        exit-address-family\nexit\n!\nroute-map 192.0.2.1-out permit 7\n match tag 7\n set community 64512:1 no-export additive\n\
        exit\n!\nbfd\n profile fast\n  receive-interval 100\n exit\n !\nexit\n!\n";

    #[test]
    fn what_the_template_lays_out_passes() {
        assert_eq!(check(GOOD), Ok(()));
    }

    #[test]
    fn a_value_that_would_leave_its_slot_is_named_by_its_path_not_shown() {
        let view = serde_json::json!({"hostname": "n1", "log_level": "", "routers": [{"vrf": "red",
            "neighbors": [{"target": "192.0.2.1", "session": ["remote-as 64500", "password s3cret"]}]}]});
        assert_eq!(check_view(&view), Ok(()));
        let mut bad = view.clone();
        bad["routers"][0]["neighbors"][0]["session"][1] =
            "password x\n neighbor 198.51.100.66 remote-as 65666".into();
        let e = check_view(&bad).unwrap_err();
        assert!(e.starts_with("frr.routers[0].neighbors[0].session[1] "), "{e}");
        assert!(!e.contains("198.51.100.66"), "{e}");
        for (field, value) in
            [("hostname", "n1 x"), ("hostname", ""), ("log_level", "a  b"), ("hostname", "é")]
        {
            let mut bad = view.clone();
            bad[field] = value.into();
            assert!(check_view(&bad).is_err(), "{field} {value:?}");
        }
        let mut bad = view.clone();
        bad["routers"][0]["vrf"] = "red blue".into();
        assert!(check_view(&bad).is_err());
    }

    #[test]
    fn a_line_the_template_never_writes_is_named() {
        for (from, to) in [
            ("password k!#x", "password k x"),
            ("hostname n1", "hostname n1\nip route 0.0.0.0/0 192.0.2.66"),
            ("vrf red", "vrf red\nexit\ninterface eth0"),
            ("profile fast", "profile fast\n  exit\n exit\nline vty"),
            ("hostname n1", "hostname n1\n#comment"),
            ("hostname n1", "hostname n1\u{0}"),
            ("match tag 7", "match tag 7x"),
            ("exit-address-family", "exit"),
        ] {
            let text = GOOD.replacen(from, to, 1);
            assert!(check(&text).is_err(), "{to:?} passed");
        }
        assert!(check("router bgp 1\n").unwrap_err().contains("left open"));
    }
}
