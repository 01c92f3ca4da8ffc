//! The HTTP side (hyper): the device description, the service descriptions and the SOAP control URLs.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use contract::participant::ParticipantEvent;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, SERVER};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::device::{self, Device, SERVICES};
use crate::events::Events;
use crate::soap::{self, Fault, Gateway};

/// A SOAP body larger than this is no control request.
const MAX_BODY: usize = 64 * 1024;

pub struct State {
    pub device: Arc<Device>,
    pub gateway: Mutex<Gateway>,
    pub events: Arc<Events>,
}

/// Serves connections until the task is dropped.
pub async fn serve(listener: TcpListener, state: Arc<State>) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                state.events.error(format!("HTTP accept failed: {e}"));
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, from, req).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("upnp-gateway: HTTP connection from {from}: {e}");
            }
        });
    }
}

async fn handle(state: &State, from: SocketAddr, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    eprintln!("upnp-gateway: {} {path} from {from}", req.method());
    if req.method() == Method::GET {
        if path == device::DESCRIPTION_PATH {
            return xml(StatusCode::OK, state.device.description());
        }
        if let Some(s) = SERVICES.iter().find(|s| s.scpd_path == path) {
            return xml(StatusCode::OK, device::scpd(s.version));
        }
        return plain(StatusCode::NOT_FOUND, "not found");
    }
    let Some(service) = SERVICES.iter().find(|s| s.control_path == path) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    if req.method() != Method::POST {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "control takes POST");
    }
    // `"urn:...:service:WANIPConnection:1#AddPortMapping"`; igd-next says :1 to a :2 service too, so only the
    // action name is held against the body.
    let header_action = req
        .headers()
        .get("SOAPACTION")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .trim_matches('"')
                .rsplit_once('#')
                .map(|(_, a)| a.to_owned())
                .unwrap_or_default()
        });
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Err(e) => {
            state
                .events
                .error(format!("bad SOAP request from {from}: {e}"));
            return plain(StatusCode::BAD_REQUEST, "bad request body");
        }
    };
    let call = match soap::parse_call(&body) {
        Ok(c) => c,
        Err(why) => {
            state
                .events
                .error(format!("bad SOAP body from {from}: {why}"));
            return plain(StatusCode::BAD_REQUEST, &why);
        }
    };
    let service_type = service.service_type();
    let result = match header_action {
        Some(a) if a != call.action => {
            state.events.error(format!(
                "SOAPACTION {a} from {from} does not name the body's {}",
                call.action
            ));
            Err(Fault::INVALID_ACTION)
        }
        None => {
            state
                .events
                .error(format!("SOAP request from {from} without SOAPACTION"));
            Err(Fault::INVALID_ACTION)
        }
        Some(_) => state.gateway.lock().unwrap().call(service.version, &call),
    };
    let (status, body, outputs, fault) = match result {
        Ok(outputs) => (
            StatusCode::OK,
            soap::response(&service_type, &call.action, &outputs),
            outputs,
            None,
        ),
        Err(f) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            soap::fault(&f),
            Default::default(),
            Some(f.label()),
        ),
    };
    state.events.emit(ParticipantEvent::SoapAction {
        from: from.to_string(),
        service: service_type,
        action: call.action,
        args: call.args,
        result: outputs,
        fault,
    });
    xml(status, body)
}

fn xml(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    respond(status, "text/xml; charset=\"utf-8\"", body)
}

fn plain(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", format!("{body}\n"))
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        content_type.parse().expect("a valid header value"),
    );
    r.headers_mut()
        .insert(SERVER, crate::SERVER.parse().expect("a valid header value"));
    r
}
