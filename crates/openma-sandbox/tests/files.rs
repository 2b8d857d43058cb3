//! The file tools on a real session workspace: semantics of read/write/edit/glob/grep, and
//! that no path — `..`, absolute, or a symlink made inside the sandbox — reaches the host.

mod common;

use std::os::unix::fs::MetadataExt;

use base64::Engine;
use common::{SECRET, TestEnv, bounded, text};
use serde_json::json;

#[tokio::test]
async fn write_creates_parents_owned_by_the_session_and_read_numbers_lines() {
    bounded(async {
        let env = TestEnv::new();
        let out = env
            .call(
                "s1",
                "write",
                json!({"file_path": "/workspace/a/b/c.txt", "content": "one\ntwo\nthree\n"}),
            )
            .await;
        assert!(!out.is_error, "{}", text(&out));
        assert!(text(&out).contains("Created /workspace/a/b/c.txt"));
        let uid = env.sandboxes.session_uid("s1").unwrap();
        for p in ["a", "a/b", "a/b/c.txt"] {
            assert_eq!(
                std::fs::metadata(env.workspace("s1").join(p))
                    .unwrap()
                    .uid(),
                uid,
                "{p}"
            );
        }
        // The sandbox sees it and can change it.
        assert_eq!(
            env.bash("s1", "cat a/b/c.txt && echo four >> a/b/c.txt")
                .await,
            "one\ntwo\nthree\n"
        );
        let out = env
            .call("s1", "read", json!({"file_path": "a/b/c.txt"}))
            .await;
        assert_eq!(
            text(&out),
            "     1\tone\n     2\ttwo\n     3\tthree\n     4\tfour\n"
        );
        let out = env
            .call(
                "s1",
                "read",
                json!({"file_path": "a/b/c.txt", "view_range": [2, 3]}),
            )
            .await;
        assert_eq!(text(&out), "     2\ttwo\n     3\tthree\n");
        let out = env
            .call(
                "s1",
                "read",
                json!({"file_path": "a/b/c.txt", "view_range": [3, -1]}),
            )
            .await;
        assert_eq!(text(&out), "     3\tthree\n     4\tfour\n");
        let out = env
            .call(
                "s1",
                "read",
                json!({"file_path": "a/b/c.txt", "view_range": [9, 0]}),
            )
            .await;
        assert!(
            out.is_error && text(&out).contains("has 4 lines"),
            "{}",
            text(&out)
        );
        // Overwrite keeps it a file of the session.
        let out = env
            .call(
                "s1",
                "write",
                json!({"file_path": "a/b/c.txt", "content": "new"}),
            )
            .await;
        assert!(text(&out).starts_with("Wrote"));
        assert_eq!(env.bash("s1", "cat a/b/c.txt").await, "new");
    })
    .await;
}

#[tokio::test]
async fn read_pages_long_files_and_recognises_binaries_and_images() {
    bounded(async {
        let env = TestEnv::new();
        env.bash("s1", "seq 1 5000 > long.txt; head -c 3000 /dev/urandom > blob.bin; printf '\\0abc' >> blob.bin; : > empty").await;
        let out = env.call("s1", "read", json!({"file_path": "long.txt"})).await;
        let s = text(&out);
        assert!(s.starts_with("     1\t1\n") && s.contains("  2000\t2000\n") && !s.contains("  2001\t"));
        assert!(s.contains("Showing lines 1-2000 of 5000") && s.contains("[2001, …]"), "{}", &s[s.len() - 200..]);
        let out = env.call("s1", "read", json!({"file_path": "long.txt", "view_range": [4999, 0]})).await;
        assert_eq!(text(&out), "  4999\t4999\n  5000\t5000\n");
        let out = env.call("s1", "read", json!({"file_path": "blob.bin"})).await;
        assert!(text(&out).contains("binary file (3004 bytes)"), "{}", text(&out));
        assert!(text(&env.call("s1", "read", json!({"file_path": "empty"})).await).contains("empty"));
        // A 1x1 PNG comes back as an image block.
        let png = base64::engine::general_purpose::STANDARD
            .decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
            .unwrap();
        std::fs::write(env.workspace("s1").join("dot.png"), &png).unwrap();
        let out = env.call("s1", "read", json!({"file_path": "/workspace/dot.png"})).await;
        assert_eq!(out.content[0]["type"], "image");
        assert_eq!(out.content[0]["source"]["media_type"], "image/png");
        let data = out.content[0]["source"]["data"].as_str().unwrap();
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(data).unwrap(), png);
        // Directories and missing files are errors.
        assert!(env.call("s1", "read", json!({"file_path": "/workspace"})).await.is_error);
        let out = env.call("s1", "read", json!({"file_path": "nope.txt"})).await;
        assert!(out.is_error && text(&out).contains("/workspace/nope.txt: no such file"), "{}", text(&out));
    })
    .await;
}

#[tokio::test]
async fn edit_requires_a_unique_match_unless_replace_all() {
    bounded(async {
        let env = TestEnv::new();
        env.call("s1", "write", json!({"file_path": "f.rs", "content": "let a = 1;\nlet b = 1;\nlet c = 2;\n"})).await;
        let out = env.call("s1", "edit", json!({"file_path": "f.rs", "old_string": "= 1", "new_string": "= 10"})).await;
        assert!(out.is_error && text(&out).contains("found 2 times"), "{}", text(&out));
        let out = env.call("s1", "edit", json!({"file_path": "f.rs", "old_string": "= 3", "new_string": "= 4"})).await;
        assert!(out.is_error && text(&out).contains("0 matches"), "{}", text(&out));
        let out = env.call("s1", "edit", json!({"file_path": "f.rs", "old_string": "let c = 2;", "new_string": "let c = 3;"})).await;
        assert!(!out.is_error, "{}", text(&out));
        assert!(text(&out).contains("replaced 1 occurrence") && text(&out).contains("     3\tlet c = 3;"), "{}", text(&out));
        let out = env
            .call("s1", "edit", json!({"file_path": "f.rs", "old_string": "= 1", "new_string": "= 10", "replace_all": true}))
            .await;
        assert!(text(&out).contains("replaced 2 occurrences"), "{}", text(&out));
        assert_eq!(std::fs::read_to_string(env.workspace("s1").join("f.rs")).unwrap(), "let a = 10;\nlet b = 10;\nlet c = 3;\n");
        let uid = env.sandboxes.session_uid("s1").unwrap();
        assert_eq!(std::fs::metadata(env.workspace("s1").join("f.rs")).unwrap().uid(), uid);
        assert!(env.call("s1", "edit", json!({"file_path": "f.rs", "old_string": "", "new_string": "x"})).await.is_error);
        assert!(env.call("s1", "edit", json!({"file_path": "missing.rs", "old_string": "a", "new_string": "b"})).await.is_error);
    })
    .await;
}

#[tokio::test]
async fn glob_matches_doublestar_newest_first() {
    bounded(async {
        let env = TestEnv::new();
        env.bash(
            "s1",
            "mkdir -p src/x .git && touch -d '2020-01-01' src/old.rs && touch -d '2021-01-01' src/x/mid.rs && touch src/new.rs README.md .git/HEAD.rs",
        )
        .await;
        let out = env.call("s1", "glob", json!({"pattern": "**/*.rs"})).await;
        assert_eq!(text(&out), "/workspace/src/new.rs\n/workspace/src/x/mid.rs\n/workspace/src/old.rs\n");
        let out = env.call("s1", "glob", json!({"pattern": "*.rs", "path": "/workspace/src"})).await;
        assert_eq!(text(&out), "/workspace/src/new.rs\n/workspace/src/old.rs\n");
        let out = env.call("s1", "glob", json!({"pattern": "/workspace/*.md"})).await;
        assert_eq!(text(&out), "/workspace/README.md\n");
        assert_eq!(text(&env.call("s1", "glob", json!({"pattern": "**/*.py"})).await), "No files found.");
        assert!(env.call("s1", "glob", json!({"pattern": "a[", "path": "src"})).await.is_error);
        assert!(env.call("s1", "glob", json!({"pattern": "*", "path": ".."})).await.is_error);
        assert!(env.call("s1", "glob", json!({"pattern": "/etc/*"})).await.is_error);
    })
    .await;
}

#[tokio::test]
async fn glob_caps_the_number_of_results() {
    bounded(async {
        let env = TestEnv::new();
        env.bash("s1", "mkdir many && cd many && seq 1 1500 | xargs touch")
            .await;
        let s = text(&env.call("s1", "glob", json!({"pattern": "many/*"})).await);
        assert_eq!(
            s.lines()
                .filter(|l| l.starts_with("/workspace/many/"))
                .count(),
            1000
        );
        assert!(
            s.contains("1000 most recently modified of 1500"),
            "{}",
            &s[s.len() - 200..]
        );
    })
    .await;
}

#[tokio::test]
async fn grep_prints_path_line_text_and_respects_gitignore() {
    bounded(async {
        let env = TestEnv::new();
        env.bash(
            "s1",
            "mkdir -p src target && printf 'fn main() {\\n    todo!()\\n}\\n' > src/main.rs && echo 'todo: later' > notes.md \
             && echo 'todo in build output' > target/out.txt && echo target/ > .gitignore && printf 'todo\\0' > bin.dat",
        )
        .await;
        let out = env.call("s1", "grep", json!({"pattern": "todo"})).await;
        assert_eq!(text(&out), "/workspace/notes.md:1:todo: later\n/workspace/src/main.rs:2:    todo!()\n");
        let out = env.call("s1", "grep", json!({"pattern": "^fn \\w+", "path": "src/main.rs"})).await;
        assert_eq!(text(&out), "/workspace/src/main.rs:1:fn main() {\n");
        let out = env.call("s1", "grep", json!({"pattern": "todo", "path": "/workspace/target"})).await;
        // As with ripgrep, a path asked for explicitly is searched even if ignored.
        assert_eq!(text(&out), "/workspace/target/out.txt:1:todo in build output\n");
        assert_eq!(text(&env.call("s1", "grep", json!({"pattern": "absent"})).await), "No matches found.");
        let out = env.call("s1", "grep", json!({"pattern": "(unclosed"})).await;
        assert!(out.is_error && text(&out).contains("regular expression"));
    })
    .await;
}

#[tokio::test]
async fn grep_caps_its_output() {
    bounded(async {
        let env = TestEnv::new();
        env.bash("s1", "seq 1 5000 | sed 's/^/match /' > big.txt")
            .await;
        let s = text(&env.call("s1", "grep", json!({"pattern": "match"})).await);
        assert_eq!(
            s.lines()
                .filter(|l| l.starts_with("/workspace/big.txt:"))
                .count(),
            1000
        );
        assert!(s.contains("first 1000 matching lines"));
    })
    .await;
}

#[tokio::test]
async fn file_tools_cannot_reach_host_files() {
    bounded(async {
        let env = TestEnv::new();
        let secret = env.base.join("secret.txt");
        env.bash("other", "echo other-secret > mine.txt").await;
        let other = env.workspace("other").join("mine.txt");
        // Links made inside the sandbox, pointing at host paths and up out of the workspace.
        env.bash(
            "s1",
            &format!(
                "ln -s {} abs-link; ln -s ../../secret.txt rel-link; ln -s ../../../../../../../../etc/passwd deep-link; \
                 ln -s {} other-link; ln -s / root-link; mkdir d; ln -s .. d/up",
                secret.display(),
                other.display()
            ),
        )
        .await;
        let attempts = [
            "../../secret.txt".to_string(),
            "/workspace/../../secret.txt".into(),
            "/workspace/../secret.txt".into(),
            secret.display().to_string(),
            other.display().to_string(),
            "../other/workspace/mine.txt".into(),
            "abs-link".into(),
            "rel-link".into(),
            "deep-link".into(),
            "other-link".into(),
            "root-link/etc/passwd".into(),
            "d/up/../../secret.txt".into(),
            "d/up/d/up/../secret.txt".into(),
            "/etc/passwd".into(),
            "/root/.bashrc".into(),
        ];
        for path in &attempts {
            let out = env.call("s1", "read", json!({"file_path": path})).await;
            assert!(out.is_error, "read {path} succeeded: {}", text(&out));
            let s = text(&out);
            assert!(!s.contains(SECRET) && !s.contains("other-secret") && !s.contains("root:x"), "{path}: {s}");
            let out = env.call("s1", "grep", json!({"pattern": ".", "path": path})).await;
            assert!(!text(&out).contains(SECRET) && !text(&out).contains("other-secret"), "grep {path}");
        }
        // Writing through a link never lands outside either.
        for path in ["abs-link", "rel-link", "root-link/tmp/x", "../escape.txt"] {
            let out = env.call("s1", "write", json!({"file_path": path, "content": "pwned"})).await;
            assert!(out.is_error, "write {path} succeeded");
        }
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), SECRET);
        assert!(!env.base.join("escape.txt").exists());
        let out = env.call("s1", "edit", json!({"file_path": "rel-link", "old_string": "host", "new_string": "x"})).await;
        assert!(out.is_error);
        // A whole-workspace grep and glob do not follow the links out.
        let out = env.call("s1", "grep", json!({"pattern": "secret|root:"})).await;
        assert!(!text(&out).contains(SECRET) && !text(&out).contains("root:x"), "{}", text(&out));
        let out = env.call("s1", "glob", json!({"pattern": "**/*"})).await;
        assert!(!text(&out).contains("passwd") && !text(&out).contains("mine.txt"), "{}", text(&out));
        // Links inside the workspace work.
        env.bash("s1", "echo inside > real.txt; ln -s /workspace/real.txt good-abs; ln -s real.txt good-rel").await;
        for path in ["good-abs", "good-rel", "d/up/real.txt"] {
            let out = env.call("s1", "read", json!({"file_path": path})).await;
            assert_eq!(text(&out), "     1\tinside\n", "{path}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_fifo_does_not_hang_the_file_tools() {
    bounded(async {
        let env = TestEnv::new();
        env.bash("s1", "mkfifo pipe").await;
        assert!(
            env.call("s1", "read", json!({"file_path": "pipe"}))
                .await
                .is_error
        );
        assert!(
            env.call("s1", "write", json!({"file_path": "pipe", "content": "x"}))
                .await
                .is_error
        );
        let out = env.call("s1", "grep", json!({"pattern": "x"})).await;
        assert_eq!(text(&out), "No matches found.");
    })
    .await;
}

#[tokio::test]
async fn bad_file_tool_input_is_an_error_result() {
    bounded(async {
        let env = TestEnv::new();
        let cases = [
            ("read", json!({})),
            ("read", json!({"file_path": 3})),
            ("read", json!({"file_path": "x", "view_range": [1]})),
            ("read", json!({"file_path": "x", "view_range": "1-2"})),
            ("read", json!({"file_path": "x", "view_range": [0, 2]})),
            ("write", json!({"file_path": "x"})),
            ("write", json!({"file_path": "", "content": "x"})),
            ("edit", json!({"file_path": "x", "old_string": "a"})),
            ("edit", json!({"file_path": "x", "old_string": "a", "new_string": "b", "replace_all": "yes"})),
            ("glob", json!({"path": "x"})),
            ("grep", json!({"pattern": ["a"]})),
            ("grep", json!(null)),
        ];
        for (tool, input) in cases {
            let out = env.call("s1", tool, input.clone()).await;
            assert!(out.is_error, "{tool} {input}");
            assert!(!text(&out).is_empty());
        }
    })
    .await;
}

#[test]
fn read_glob_and_grep_are_read_only() {
    let env = TestEnv::new();
    for (name, ro) in [
        ("bash", false),
        ("read", true),
        ("write", false),
        ("edit", false),
        ("glob", true),
        ("grep", true),
    ] {
        assert_eq!(env.tool(name).read_only(), ro, "{name}");
    }
}
