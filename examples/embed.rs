//! An actix-web product that embeds Gatehouse: the same actors, routes and
//! auth middleware, mounted next to the product's own routes.
//!
//! ```sh
//! GATEHOUSE_HOME=/tmp/embed cargo run --example embed -- 8090
//! ```

use actix_web::{web, App, HttpResponse, HttpServer};
use gatehouse::auth::{Authenticate, Principal, RequireScope, Scope};
use gatehouse::config::Config;
use gatehouse::Gatehouse;

/// The product's own route, behind Gatehouse's sign-in.
async fn hello(principal: Principal) -> HttpResponse {
    HttpResponse::Ok()
        .json(serde_json::json!({"hello": principal.username, "roles": principal.roles}))
}

async fn admin_only(principal: Principal) -> HttpResponse {
    HttpResponse::Ok().body(format!("welcome, administrator {}", principal.username))
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args()
        .nth(1)
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(8090);
    let home = gatehouse::home::default_home();
    let config = Config::load(None, &home)?;
    let gh = Gatehouse::builder(config).home(&home).build().await?;
    // Optional: let `gatehouse users …` reach this process too.
    gatehouse::admin_socket::serve(gh.data(), &home)?;

    let data = gh.data();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .configure(gatehouse::configure)
            .route("/", web::get().to(|| async { "the product's public page" }))
            .service(
                web::scope("/product")
                    .wrap(Authenticate)
                    .route("/hello", web::get().to(hello))
                    .service(
                        web::scope("/admin")
                            .wrap(RequireScope(Scope::Admin))
                            .route("", web::get().to(admin_only)),
                    ),
            )
    })
    .bind(("127.0.0.1", port))?;
    for a in server.addrs() {
        println!("listening on http://{a}");
    }
    server.run().await?;
    Ok(())
}
