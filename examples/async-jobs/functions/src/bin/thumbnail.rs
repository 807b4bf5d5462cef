//! Makes thumbnails. POST /api/images with a PNG, JPEG, GIF or BMP body (send it with
//! `Prefer: respond-async` to get `202 Accepted` at once and the result later): decodes the
//! image, scales it to fit 128×128 and stores the PNG thumbnail and the metadata in kv
//! `images` under the invocation id. GET /api/images/:id/thumbnail serves the thumbnail;
//! GET /api/notifications lists what `notify` recorded.

use std::io::Cursor;

use image::{ImageFormat, ImageReader};
use updraft_sdk::{http, kv};
use wstd::http::{Body, Error, Method, Request, Response, StatusCode};

/// Largest side of a thumbnail, in pixels.
const THUMB: u32 = 128;
/// Largest image accepted, in bytes.
const MAX_IMAGE: usize = 8 << 20;

#[wstd::http_server]
async fn main(req: Request<Body>) -> Result<Response<Body>, Error> {
    match (req.method().clone(), http::param(&req, "id")) {
        (Method::POST, None) => submit(req).await,
        (Method::GET, Some(id)) => thumbnail(&id),
        (Method::GET, None) => notifications(),
        (method, _) => http::error(StatusCode::METHOD_NOT_ALLOWED, format!("no {method} here")),
    }
}

async fn submit(req: Request<Body>) -> Result<Response<Body>, Error> {
    let id = http::invocation_id(&req).unwrap_or("unknown").to_owned();
    let bytes = req.into_body().bytes_contents().await?;
    if bytes.len() > MAX_IMAGE {
        return http::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("images up to {MAX_IMAGE} bytes"),
        );
    }
    let reader = match ImageReader::new(Cursor::new(&bytes)).with_guessed_format() {
        Ok(r) => r,
        Err(e) => {
            return http::error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the image: {e}"),
            );
        }
    };
    let Some(format) = reader.format() else {
        return http::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send a PNG, JPEG, GIF or BMP image",
        );
    };
    let image = match reader.decode() {
        Ok(i) => i,
        Err(e) => {
            return http::error(
                StatusCode::BAD_REQUEST,
                format!("cannot decode the image: {e}"),
            );
        }
    };
    let thumb = image.thumbnail(THUMB, THUMB);
    let mut png = Vec::new();
    thumb
        .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
        .map_err(|e| Error::msg(format!("cannot encode the thumbnail: {e}")))?;
    let metadata = serde_json::json!({
        "id": id,
        "format": format!("{format:?}").to_lowercase(),
        "width": image.width(),
        "height": image.height(),
        "bytes": bytes.len(),
        "thumbnail": {
            "width": thumb.width(),
            "height": thumb.height(),
            "bytes": png.len(),
            "url": format!("/api/images/{id}/thumbnail"),
        },
    });
    let store = kv::Store::open("images")?;
    store.set(&format!("thumbnails/{id}"), &png)?;
    store.set_json(&format!("metadata/{id}"), &metadata)?;
    println!(
        "thumbnail {id}: {}x{} -> {}x{}",
        image.width(),
        image.height(),
        thumb.width(),
        thumb.height()
    );
    http::json_with(StatusCode::CREATED, &metadata)
}

fn thumbnail(id: &str) -> Result<Response<Body>, Error> {
    match kv::Store::open("images")?.get(&format!("thumbnails/{id}"))? {
        Some(png) => Ok(Response::builder()
            .header("content-type", "image/png")
            .body(Body::from(png))?),
        None => http::error(
            StatusCode::NOT_FOUND,
            format!("no thumbnail for `{id}` (yet)"),
        ),
    }
}

fn notifications() -> Result<Response<Body>, Error> {
    let store = kv::Store::open("images")?;
    let mut out = Vec::new();
    for key in store.keys_with_prefix("notifications/")? {
        if let Some(n) = store.get_json::<serde_json::Value>(&key)? {
            out.push(n);
        }
    }
    http::json(&out)
}
