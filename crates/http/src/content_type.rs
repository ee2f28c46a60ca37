//! File extension -> `Content-Type`.
//!
//! `mime_guess` supplies the table; a few entries are pinned to what the
//! TritonHTTP spec names. Charset rule, applied consistently: every `text/*`
//! type is sent with `; charset=utf-8` (documents on a web server are UTF-8
//! far more often than the Latin-1/ASCII that a bare `text/*` means), except
//! `text/css`, which the spec lists bare and which declares its own encoding
//! with `@charset`. JavaScript is `application/javascript` (as the spec
//! says) and carries no charset, like every non-`text/*` type.

use std::path::Path;

/// Sent for files whose extension is unknown or absent.
pub const DEFAULT: &str = "application/octet-stream";

/// The `Content-Type` for a file, judged by its extension (case-insensitive).
pub fn for_path(path: &Path) -> String {
    let ext = match path.extension().and_then(|e| e.to_str()) {
        Some(ext) => ext.to_ascii_lowercase(),
        None => return DEFAULT.to_owned(),
    };
    match ext.as_str() {
        "html" | "htm" => return "text/html; charset=utf-8".to_owned(),
        "css" => return "text/css".to_owned(),
        "js" | "mjs" => return "application/javascript".to_owned(),
        "png" => return "image/png".to_owned(),
        "jpg" | "jpeg" => return "image/jpeg".to_owned(),
        _ => {}
    }
    match mime_guess::from_ext(&ext).first() {
        Some(mime) if mime.type_() == mime_guess::mime::TEXT && mime.get_param("charset").is_none() => {
            format!("{}; charset=utf-8", mime.essence_str())
        }
        Some(mime) => mime.essence_str().to_owned(),
        None => DEFAULT.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(name: &str) -> String {
        for_path(Path::new(name))
    }

    #[test]
    fn spec_types() {
        assert_eq!(ct("index.html"), "text/html; charset=utf-8");
        assert_eq!(ct("a/b/INDEX.HTM"), "text/html; charset=utf-8");
        assert_eq!(ct("x.png"), "image/png");
        assert_eq!(ct("x.jpg"), "image/jpeg");
        assert_eq!(ct("x.JPEG"), "image/jpeg");
        assert_eq!(ct("s.css"), "text/css");
        assert_eq!(ct("app.js"), "application/javascript");
    }

    #[test]
    fn other_types_follow_the_charset_rule() {
        assert_eq!(ct("notes.txt"), "text/plain; charset=utf-8");
        assert_eq!(ct("data.csv"), "text/csv; charset=utf-8");
        assert_eq!(ct("doc.pdf"), "application/pdf");
        assert_eq!(ct("pic.gif"), "image/gif");
    }

    #[test]
    fn unknown_is_octet_stream() {
        assert_eq!(ct("Makefile"), DEFAULT);
        assert_eq!(ct("blob.qqqzzz"), DEFAULT);
        assert_eq!(ct(".hidden"), DEFAULT);
    }
}
