use super::*;
use kube::runtime::{reflector, watcher};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn pipeline(name: &str, autoscaling: Value) -> PipelineDeployment {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "PipelineDeployment",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "kafka": {"bootstrapServers": "k:9092", "topic": name},
            "workers": {"image": "w:1"},
            "autoscaling": {"enabled": true, "provider": "KEDA"},
            "postgres": {"external": {"primaryUrl": {"name": "db", "key": "url"}}},
        },
        "status": {"autoscaling": autoscaling},
    }))
    .unwrap()
}

async fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let code = buf[9..12].parse().unwrap();
    let body = buf.split_once("\r\n\r\n").unwrap().1;
    (code, serde_json::from_str(body).unwrap())
}

#[tokio::test]
async fn sizing_is_the_fresh_reading_or_an_error_never_zero() {
    let now = k8s_openapi::jiff::Timestamp::now();
    let old = now - k8s_openapi::jiff::SignedDuration::from_secs(600);
    let (store, mut writer) = reflector::store();
    for pd in [
        pipeline(
            "fresh",
            json!({"sampledAt": now.to_string(), "neededWorkers": 3, "reason": "lag 9000"}),
        ),
        pipeline(
            "stale",
            json!({"sampledAt": old.to_string(), "neededWorkers": 3}),
        ),
        pipeline(
            "unknown",
            json!({"sampledAt": now.to_string(), "reason": "offsets unreadable"}),
        ),
    ] {
        writer.apply_watcher_event(&watcher::Event::Apply(pd));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(Arc::new(Metrics::default()), store);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (code, body) = get(addr, "/api/v1/sizing/shop/fresh").await;
    assert_eq!(code, 200);
    assert_eq!(body["neededWorkers"], 3);
    assert_eq!(body["sampledAt"], now.to_string());
    assert_eq!(body["reason"], "lag 9000");
    let (code, body) = get(addr, "/api/v1/sizing/shop/stale").await;
    assert_eq!(code, 503);
    assert!(body["message"].as_str().unwrap().contains("s old"));
    let (code, body) = get(addr, "/api/v1/sizing/shop/unknown").await;
    assert_eq!((code, &body["code"]), (503, &json!(503)));
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("offsets unreadable")
    );
    let (code, _) = get(addr, "/api/v1/sizing/shop/absent").await;
    assert_eq!(code, 404);
}
