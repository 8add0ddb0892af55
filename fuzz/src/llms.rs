//! The llms.py `users.json` import (`gatehouse import-llms`).

use gatehouse::llms_import::parse;

pub fn llms_import(data: &[u8]) {
    let Ok(users) = parse(&crate::text(data), crate::now()) else {
        return;
    };
    for u in &users {
        assert!(
            gatehouse::accounts::check_username(&u.username).is_ok(),
            "an imported username is valid: {:?}",
            u.username
        );
    }
}
