use serde_json::Value;

fn png_size(bytes: &[u8]) -> (u32, u32, u8) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG file");
    assert_eq!(&bytes[12..16], b"IHDR");
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    (w, h, bytes[25])
}

#[test]
fn the_app_package_has_a_manifest_with_the_bot_and_its_audit_command() {
    let manifest: Value =
        serde_json::from_str(include_str!("../../teams/manifest.json")).expect("manifest is JSON");
    assert_eq!(manifest["id"], "{{APP_ID}}");
    let bot = &manifest["bots"][0];
    assert_eq!(bot["botId"], "{{APP_ID}}");
    for scope in ["team", "groupChat", "personal"] {
        assert!(bot["scopes"].as_array().unwrap().iter().any(|s| s == scope));
    }
    let commands = &bot["commandLists"][0]["commands"];
    assert_eq!(commands[0]["title"], "audit");
    assert_eq!(manifest["icons"]["color"], "color.png");
    assert_eq!(manifest["icons"]["outline"], "outline.png");
}

#[test]
fn the_app_package_icons_are_192_and_32_pixels_and_the_outline_is_transparent() {
    let (w, h, _) = png_size(include_bytes!("../../teams/color.png"));
    assert_eq!((w, h), (192, 192));
    let (w, h, color_type) = png_size(include_bytes!("../../teams/outline.png"));
    assert_eq!((w, h), (32, 32));
    assert_eq!(color_type, 6, "the outline icon has an alpha channel");
}
