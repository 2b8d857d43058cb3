//! Shared set-up of the sandbox tests: a fresh root per test, next to a secret file the
//! sandbox must never see, and helpers to call the tools as the harness does.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openma_core::harness::tools::{Tool, ToolContext, ToolOutput};
use openma_core::tenancy::TenantId;
use openma_sandbox::{Limits, SandboxConfig, Sandboxes};
use serde_json::Value;

pub const SECRET: &str = "host-secret-4f1c9a";

pub struct TestEnv {
    /// Holds `secret.txt` and the sandbox root `sandboxes/`.
    pub base: PathBuf,
    pub root: PathBuf,
    pub sandboxes: Sandboxes,
    tools: HashMap<&'static str, Arc<dyn Tool>>,
}

pub fn limits() -> Limits {
    Limits {
        memory_bytes: 1 << 30,
        processes: 256,
        ..Limits::default()
    }
}

impl TestEnv {
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    pub fn with(adjust: impl FnOnce(&mut SandboxConfig)) -> Self {
        Sandboxes::check().expect("bubblewrap must be installed for these tests");
        let base = std::env::temp_dir().join(format!("openma-sandbox-test-{}", ulid::Ulid::new()));
        let root = base.join("sandboxes");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(base.join("secret.txt"), SECRET).unwrap();
        let mut config = SandboxConfig::new(&root);
        config.limits = limits();
        adjust(&mut config);
        Self::at(base, config)
    }

    /// A second manager on the same root, as after a server restart.
    pub fn restarted(&self) -> Self {
        Self::at(self.base.clone(), self.sandboxes.config().clone())
    }

    fn at(base: PathBuf, config: SandboxConfig) -> Self {
        let root = config.root.clone();
        let sandboxes = Sandboxes::new(config);
        let tools = sandboxes.tools().into_iter().collect();
        TestEnv {
            base,
            root,
            sandboxes,
            tools,
        }
    }

    pub fn tool(&self, name: &str) -> &Arc<dyn Tool> {
        &self.tools[name]
    }

    pub async fn call(&self, session: &str, tool: &str, input: Value) -> ToolOutput {
        let ctx = ToolContext {
            tenant: TenantId::from_trusted("tnt_test"),
            session_id: session.to_string(),
            environment_id: "env_test".into(),
            config: None,
        };
        tokio::time::timeout(Duration::from_secs(40), self.tool(tool).run(&ctx, input))
            .await
            .unwrap_or_else(|_| panic!("{tool} call did not finish within 40 s"))
    }

    /// Runs a bash command and returns its text.
    pub async fn bash(&self, session: &str, command: &str) -> String {
        text(
            &self
                .call(session, "bash", serde_json::json!({"command": command}))
                .await,
        )
    }

    pub fn workspace(&self, session: &str) -> PathBuf {
        self.root.join(session).join("workspace")
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Shells die with their `Sandboxes` (kill on drop); the files are ours to remove.
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

pub fn text(out: &ToolOutput) -> String {
    out.content
        .iter()
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every test is bounded.
pub async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(50), f)
        .await
        .expect("test did not finish within 50 s")
}
