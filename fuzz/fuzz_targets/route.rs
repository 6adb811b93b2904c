//! Route templating for metrics: any path (with any method, with and without the headers the
//! built-ins read) maps to a label from the classifier's bounded set, never to the raw path.
//!
//! Input: the path, as bytes (lossily made UTF-8). The label of a path that no template
//! matches is `other`; a matched label is a template, so it never holds the path's own
//! parameter values unless they are literal segments of a template.
#![no_main]

mod shared;

use http::{HeaderMap, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = String::from_utf8_lossy(data);
    let mut upgrade = HeaderMap::new();
    upgrade.insert("upgrade", HeaderValue::from_static("websocket"));
    upgrade.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
    let plain = HeaderMap::new();
    for fixture in shared::fixtures() {
        let classifier = &fixture.classifier;
        let mut seen = None;
        for method in [Method::GET, Method::POST, Method::DELETE] {
            for headers in [&plain, &upgrade] {
                let route = classifier.inspect(&method, &path, headers).route();
                fixture.check_route(route);
                // The route is a function of the path alone.
                match seen {
                    None => seen = Some(route),
                    Some(first) => assert_eq!(
                        first, route,
                        "{}: the route of {path:?} depends on method or headers",
                        fixture.name
                    ),
                }
            }
        }
        // A label is a template of literal segments and `{…}` parameters (or `other`): it
        // never carries a `?` query, and is bounded whatever the path's length.
        if let Some(route) = seen {
            let label = classifier.route_label(route);
            assert!(!label.contains('?'), "{}: label {label:?}", fixture.name);
            assert!(label.len() <= 200, "{}: label {label:?}", fixture.name);
        }
    }
});
