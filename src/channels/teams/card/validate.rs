//! A check that a rendered card is an Adaptive Card of version 1.5 or
//! lower, made only of 1.5 elements and actions with the properties each
//! needs: run on every template at start, so a broken override stops the
//! service before Teams refuses a card.

use serde_json::Value;

/// Element types of Adaptive Cards 1.5 (what may stand in `body`, `items`).
const ELEMENTS: &[&str] = &[
    "TextBlock",
    "Image",
    "Media",
    "RichTextBlock",
    "ActionSet",
    "Container",
    "ColumnSet",
    "FactSet",
    "ImageSet",
    "Table",
    "Input.Text",
    "Input.Number",
    "Input.Date",
    "Input.Time",
    "Input.Toggle",
    "Input.ChoiceSet",
];

/// Action types of Adaptive Cards 1.5.
const ACTIONS: &[&str] = &[
    "Action.Execute",
    "Action.OpenUrl",
    "Action.ShowCard",
    "Action.Submit",
    "Action.ToggleVisibility",
];

/// Checks that `card` is an Adaptive Card of version 1.5 or lower made
/// only of 1.5 elements and actions, with the properties each needs.
pub fn check_adaptive_card(card: &Value) -> Result<(), String> {
    let version = card
        .get("version")
        .and_then(Value::as_str)
        .ok_or("the card has no version")?;
    let ok_version = match version.split_once('.') {
        Some((major, minor)) => major == "1" && minor.parse::<u32>().is_ok_and(|m| m <= 5),
        None => false,
    };
    if !ok_version {
        return Err(format!("version {version} is not 1.5 or lower"));
    }
    check_card(card, "card")
}

fn type_of<'a>(v: &'a Value, at: &str) -> Result<&'a str, String> {
    v.get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{at} has no type"))
}

fn check_card(card: &Value, at: &str) -> Result<(), String> {
    if type_of(card, at)? != "AdaptiveCard" {
        return Err(format!("{at} is not an AdaptiveCard"));
    }
    if let Some(body) = card.get("body") {
        check_elements(body, &format!("{at}.body"))?;
    }
    if let Some(actions) = card.get("actions") {
        check_actions(actions, &format!("{at}.actions"))?;
    }
    if let Some(a) = card.get("selectAction") {
        check_action(a, &format!("{at}.selectAction"))?;
    }
    if let Some(a) = card.get("refresh").and_then(|r| r.get("action")) {
        check_action(a, &format!("{at}.refresh.action"))?;
    }
    Ok(())
}

fn check_elements(list: &Value, at: &str) -> Result<(), String> {
    let list = list
        .as_array()
        .ok_or_else(|| format!("{at} is not a list"))?;
    for (i, e) in list.iter().enumerate() {
        check_element(e, &format!("{at}[{i}]"))?;
    }
    Ok(())
}

fn check_actions(list: &Value, at: &str) -> Result<(), String> {
    let list = list
        .as_array()
        .ok_or_else(|| format!("{at} is not a list"))?;
    for (i, a) in list.iter().enumerate() {
        check_action(a, &format!("{at}[{i}]"))?;
    }
    Ok(())
}

fn need_str(v: &Value, key: &str, at: &str) -> Result<(), String> {
    match v.get(key) {
        Some(Value::String(_)) => Ok(()),
        _ => Err(format!("{at} needs a string {key}")),
    }
}

fn check_element(e: &Value, at: &str) -> Result<(), String> {
    let t = type_of(e, at)?;
    if !ELEMENTS.contains(&t) {
        return Err(format!(
            "{at} is a {t}, which is not an Adaptive Card 1.5 element"
        ));
    }
    let at = &format!("{at} ({t})");
    match t {
        "TextBlock" => need_str(e, "text", at)?,
        "Image" => need_str(e, "url", at)?,
        "Container" => check_elements(
            e.get("items").unwrap_or(&Value::Null),
            &format!("{at}.items"),
        )?,
        "ActionSet" => check_actions(
            e.get("actions").unwrap_or(&Value::Null),
            &format!("{at}.actions"),
        )?,
        "ColumnSet" => {
            for (i, c) in e
                .get("columns")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let cat = format!("{at}.columns[{i}]");
                if type_of(c, &cat).unwrap_or("Column") != "Column" {
                    return Err(format!("{cat} is not a Column"));
                }
                if let Some(items) = c.get("items") {
                    check_elements(items, &format!("{cat}.items"))?;
                }
            }
        }
        "FactSet" => {
            let facts = e
                .get("facts")
                .and_then(Value::as_array)
                .ok_or_else(|| format!("{at} needs facts"))?;
            for (i, f) in facts.iter().enumerate() {
                need_str(f, "title", &format!("{at}.facts[{i}]"))?;
                need_str(f, "value", &format!("{at}.facts[{i}]"))?;
            }
        }
        "RichTextBlock" => {
            for (i, r) in e
                .get("inlines")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                if !r.is_string() && type_of(r, at)? != "TextRun" {
                    return Err(format!("{at}.inlines[{i}] is not a TextRun"));
                }
            }
        }
        "Table" => {
            for row in e
                .get("rows")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if type_of(row, at)? != "TableRow" {
                    return Err(format!("{at} has a row that is not a TableRow"));
                }
                for cell in row
                    .get("cells")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if type_of(cell, at)? != "TableCell" {
                        return Err(format!("{at} has a cell that is not a TableCell"));
                    }
                    check_elements(
                        cell.get("items").unwrap_or(&Value::Null),
                        &format!("{at}.cell"),
                    )?;
                }
            }
        }
        t if t.starts_with("Input.") => need_str(e, "id", at)?,
        _ => {}
    }
    if let Some(a) = e.get("selectAction") {
        if type_of(a, at)? == "Action.ShowCard" {
            return Err(format!("{at}.selectAction may not be Action.ShowCard"));
        }
        check_action(a, &format!("{at}.selectAction"))?;
    }
    Ok(())
}

fn check_action(a: &Value, at: &str) -> Result<(), String> {
    let t = type_of(a, at)?;
    if !ACTIONS.contains(&t) {
        return Err(format!(
            "{at} is a {t}, which is not an Adaptive Card 1.5 action"
        ));
    }
    match t {
        "Action.Execute" => need_str(a, "verb", at)?,
        "Action.OpenUrl" => need_str(a, "url", at)?,
        "Action.ShowCard" => check_card(
            a.get("card").ok_or_else(|| format!("{at} needs a card"))?,
            &format!("{at}.card"),
        )?,
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_validator_refuses_elements_and_actions_outside_1_5() {
        let bad_element =
            json!({"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "Carousel"}]});
        assert!(check_adaptive_card(&bad_element).is_err());
        let bad_action =
            json!({"type": "AdaptiveCard", "version": "1.5", "actions": [{"type": "Action.Http"}]});
        assert!(check_adaptive_card(&bad_action).is_err());
        let nested = json!({"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "Container", "items": [{"type": "Icon"}]}]});
        assert!(check_adaptive_card(&nested).is_err());
        let newer = json!({"type": "AdaptiveCard", "version": "1.6", "body": []});
        assert!(check_adaptive_card(&newer).is_err());
        let ok = json!({"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "hi"}]});
        assert!(check_adaptive_card(&ok).is_ok());
    }
}
