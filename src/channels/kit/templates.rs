//! One template loader for every channel.
//!
//! Each platform's templates are compiled into the binary; a file of the
//! same name under `<templates_dir>/<platform>/` replaces one. Every
//! template renders JSON (Block Kit blocks, an Adaptive Card), so `{{ x }}`
//! prints `x` JSON-encoded and cannot leave its string, and printing an
//! undefined value is an error rather than an empty string. The platform
//! then renders every template once with sample data at start (its own
//! self-check: Block Kit parses, the card is valid 1.5, no sample agent
//! text where the platform formats markup), so a broken override stops the
//! service before it posts anything.

use std::path::Path;

use anyhow::Context;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;
use serde_json::Value;

/// A platform's templates, loaded.
pub struct TemplateSet {
    env: Environment<'static>,
    platform: &'static str,
}

impl TemplateSet {
    /// The compiled-in `built_in` templates of `platform` (`slack`,
    /// `teams`), each replaced by `<dir>/<platform>/<name>` if that file
    /// exists. Fails on a file that cannot be read or does not compile.
    pub fn load(
        platform: &'static str,
        built_in: &[(&'static str, &'static str)],
        dir: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.set_auto_escape_callback(|_| AutoEscape::Json);
        let label = title(platform);
        for (name, source) in built_in {
            let path = dir
                .map(|d| d.join(platform).join(name))
                .filter(|p| p.exists());
            let source = match path {
                Some(p) => std::fs::read_to_string(&p)
                    .with_context(|| format!("cannot read {label} template {}", p.display()))?,
                None => source.to_string(),
            };
            env.add_template_owned(name.to_string(), source)
                .with_context(|| format!("{label} template {name} does not compile"))?;
        }
        Ok(Self { env, platform })
    }

    /// Renders `name` with `ctx` and parses the JSON it produced.
    pub fn render(&self, name: &str, ctx: &impl Serialize) -> anyhow::Result<Value> {
        let label = title(self.platform);
        let text = self
            .env
            .get_template(name)?
            .render(minijinja::value::Serde(ctx))
            .with_context(|| format!("rendering {label} template {name}"))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{label} template {name} did not render valid JSON"))
    }
}

fn title(platform: &str) -> &'static str {
    match platform {
        "slack" => "Slack",
        "teams" => "Teams",
        _ => "chat",
    }
}
