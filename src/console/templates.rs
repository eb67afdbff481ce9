//! The console's templates, compiled into the binary and loaded once.
//! Every template is HTML with autoescape on, so any value printed with
//! `{{ x }}` is escaped: agent text shows as text, never as markup.

use std::sync::OnceLock;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};

const TEMPLATES: &[(&str, &str)] = &[
    (
        "base.html",
        include_str!("../../templates/console/base.html"),
    ),
    (
        "message.html",
        include_str!("../../templates/console/message.html"),
    ),
    (
        "login.html",
        include_str!("../../templates/console/login.html"),
    ),
    (
        "link.html",
        include_str!("../../templates/console/link.html"),
    ),
    (
        "moving_on.html",
        include_str!("../../templates/console/moving_on.html"),
    ),
    (
        "inbox.html",
        include_str!("../../templates/console/inbox.html"),
    ),
    (
        "inbox_list.html",
        include_str!("../../templates/console/inbox_list.html"),
    ),
    (
        "request.html",
        include_str!("../../templates/console/request.html"),
    ),
    (
        "audit.html",
        include_str!("../../templates/console/audit.html"),
    ),
    (
        "admin.html",
        include_str!("../../templates/console/admin.html"),
    ),
];

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("console template {name} does not compile: {e:#}"));
        }
        env
    })
}

/// Renders `name`; a template error is logged and shown as a sentence.
pub fn render(name: &str, ctx: minijinja::Value) -> String {
    match env().get_template(name).and_then(|t| t.render(ctx)) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), template = name, "rendering a console page failed");
            "<!doctype html><title>Countersign</title><p>Countersign could not show this page; the error has been logged.</p>".into()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_template_compiles() {
        for (name, _) in super::TEMPLATES {
            super::env().get_template(name).unwrap();
        }
    }
}
