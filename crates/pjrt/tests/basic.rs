mod common;

use common::*;
use pjrt::{Client, ElementType, Error, NamedValue};

#[test]
fn load_client_devices() {
    let api = api();
    let (major, minor) = api.version();
    assert_eq!(major, 0);
    assert!(minor >= 81, "minor {minor}");
    let attrs = api.plugin_attributes().unwrap();
    eprintln!("attributes: {attrs:?}");
    // Loading again returns the same (already initialized) plugin.
    let again = pjrt::Api::load(&plugin_path()).unwrap();
    assert_eq!(again.version(), api.version());

    let c = client();
    assert_eq!(c.platform_name(), "cpu");
    eprintln!("platform version {:?}", c.platform_version());
    let devs = c.addressable_devices();
    assert_eq!(devs.len(), 4);
    for (i, d) in devs.iter().enumerate() {
        assert_eq!(d.id(), i as i32);
        assert!(!d.kind().is_empty());
        eprintln!("{d:?} kind={} debug={}", d.kind(), d.debug_string());
    }

    let c2 = Client::new(&api, &[("cpu_device_count", NamedValue::Int64(2))]).unwrap();
    assert_eq!(c2.addressable_devices().len(), 2);
    // A device of another client is rejected.
    let err = c2
        .buffer_from_host(&[0; 4], ElementType::F32, &[1], None, &devs[0])
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
}

#[test]
fn load_missing_plugin() {
    let err = pjrt::Api::load(std::path::Path::new("/nonexistent/plugin.so")).unwrap_err();
    assert!(matches!(err, Error::Load { .. }), "{err}");
}

fn round_trip(ty: ElementType, dims: &[i64], data: &[u8]) {
    let c = client();
    let dev = &c.addressable_devices()[1];
    let b = c.buffer_from_host(data, ty, dims, None, dev).unwrap();
    assert_eq!(b.dims(), dims);
    assert_eq!(b.element_type().unwrap(), ty);
    assert_eq!(b.device().unwrap(), *dev);
    assert!(b.on_device_size_in_bytes().unwrap() >= data.len());
    b.ready_event().unwrap().await_ready().unwrap();
    let mut out = vec![0u8; data.len()];
    b.to_host(&mut out).unwrap();
    assert_eq!(out, data, "{ty:?}");
    // Wrong destination size is rejected.
    let mut bad = vec![0u8; data.len() + 1];
    assert!(matches!(b.to_host(&mut bad), Err(Error::Invalid(_))));
}

#[test]
fn round_trips() {
    round_trip(
        ElementType::F32,
        &[2, 3],
        &f32_bytes(&[1.0, -2.5, 3.25, 0.0, f32::MAX, -0.0]),
    );
    let bf16: Vec<u8> = [0x3f80u16, 0xc000, 0x7f80, 0x0001]
        .iter()
        .flat_map(|x| x.to_ne_bytes())
        .collect();
    round_trip(ElementType::BF16, &[4], &bf16);
    let i64s: Vec<u8> = [i64::MIN, -1, 0, 42, i64::MAX]
        .iter()
        .flat_map(|x| x.to_ne_bytes())
        .collect();
    round_trip(ElementType::S64, &[5, 1], &i64s);
    round_trip(ElementType::Pred, &[2, 2], &[1, 0, 0, 1]);
    round_trip(ElementType::F32, &[], &f32_bytes(&[7.0]));
    round_trip(ElementType::F32, &[0, 3], &[]);
}

#[test]
fn invalid_uploads_are_rejected() {
    let c = client();
    let dev = &c.addressable_devices()[0];
    let bad = |r: pjrt::Result<pjrt::Buffer>| match r {
        Err(Error::Invalid(m)) => eprintln!("rejected: {m}"),
        other => panic!("expected Invalid, got {other:?}"),
    };
    bad(c.buffer_from_host(&[0; 8], ElementType::F32, &[-1, 2], None, dev));
    bad(c.buffer_from_host(&[0; 8], ElementType::F32, &[3], None, dev));
    bad(c.buffer_from_host(&[0; 8], ElementType::F32, &[1], None, dev));
    bad(c.buffer_from_host(&[0; 8], ElementType::F32, &[2], Some(&[4, 4]), dev));
    bad(c.buffer_from_host(&[0; 8], ElementType::F32, &[3], Some(&[4]), dev));
    bad(c.buffer_from_host(&[0; 8], ElementType::F32, &[2], Some(&[2]), dev));
    bad(c.buffer_from_host(&[0; 8], ElementType::F32, &[2], Some(&[-4]), dev));
    bad(c.buffer_from_host(&[0; 8], ElementType::F32, &[i64::MAX, i64::MAX], None, dev));
}

#[test]
fn strided_upload_transposed() {
    // Host holds a 3x2 row-major matrix m; upload its transpose (2x3) by
    // strides: t[i][j] = m[j][i] at byte offset j*8 + i*4.
    let c = client();
    let dev = &c.addressable_devices()[0];
    let m = f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let b = c
        .buffer_from_host(&m, ElementType::F32, &[2, 3], Some(&[4, 8]), dev)
        .unwrap();
    assert_eq!(b.dims(), vec![2, 3]);
    let out = bytes_f32(&b.to_host_vec().unwrap());
    assert_eq!(out, vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
    // Row-major strides give the identity.
    let b = c
        .buffer_from_host(&m, ElementType::F32, &[3, 2], Some(&[8, 4]), dev)
        .unwrap();
    assert_eq!(b.to_host_vec().unwrap(), m);
}

#[test]
fn shared_zero_copy_upload() {
    let c = client();
    let dev = &c.addressable_devices()[0];
    let data = std::sync::Arc::new(f32_bytes(&[1.0, 2.0, 3.0, 4.0]));
    let weak = std::sync::Arc::downgrade(&data);
    let b = c
        .buffer_from_host_shared(data, ElementType::F32, &[4], None, dev)
        .unwrap();
    assert_eq!(
        bytes_f32(&b.to_host_vec().unwrap()),
        vec![1.0, 2.0, 3.0, 4.0]
    );
    drop(b);
    // The host data is released once the plugin is done with it.
    for _ in 0..100 {
        if weak.upgrade().is_none() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("host data still referenced after the buffer was dropped");
}

#[test]
fn delete_buffer() {
    let c = client();
    let dev = &c.addressable_devices()[0];
    let b = c
        .buffer_from_host(&f32_bytes(&[1.0]), ElementType::F32, &[1], None, dev)
        .unwrap();
    assert!(!b.is_deleted());
    b.delete();
    assert!(b.is_deleted());
    let mut out = [0u8; 4];
    assert!(b.to_host(&mut out).is_err());
}

#[test]
fn copy_to_other_device() {
    let c = client();
    let devs = c.addressable_devices();
    let b = c
        .buffer_from_host(
            &f32_bytes(&[1.0, 2.0]),
            ElementType::F32,
            &[2],
            None,
            &devs[0],
        )
        .unwrap();
    let b2 = b.copy_to_device(&devs[3]).unwrap();
    assert_eq!(b2.device().unwrap(), devs[3]);
    assert_eq!(bytes_f32(&b2.to_host_vec().unwrap()), vec![1.0, 2.0]);
}

#[test]
fn events() {
    let c = client();
    let dev = &c.addressable_devices()[0];
    let b = c
        .buffer_from_host(&f32_bytes(&[1.0]), ElementType::F32, &[1], None, dev)
        .unwrap();
    let ev = b.ready_event().unwrap();
    ev.await_ready().unwrap();
    assert!(ev.is_ready().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    ev.on_ready(Box::new(move |r| tx.send(r.is_ok()).unwrap()));
    drop(ev);
    assert!(rx.recv().unwrap());

    // Callback registered on a (possibly) pending completion event.
    let exe = c.compile(MATMUL).unwrap();
    let a = c
        .buffer_from_host(&f32_bytes(&[1.0; 6]), ElementType::F32, &[2, 3], None, dev)
        .unwrap();
    let b = c
        .buffer_from_host(&f32_bytes(&[1.0; 6]), ElementType::F32, &[3, 2], None, dev)
        .unwrap();
    let (out, ev) = exe.execute_with_event(&[&a, &b], None, &[]).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    ev.on_ready(Box::new(move |r| tx.send(r).unwrap()));
    drop(ev);
    rx.recv().unwrap().unwrap();
    assert_eq!(bytes_f32(&out[0].to_host_vec().unwrap()), vec![3.0; 4]);
}

/// The CPU plugin ignores the key-value callbacks; the client still works and
/// owns the store until it is dropped.
#[test]
fn client_with_a_kv_store_runs_and_releases_the_store() {
    struct Nothing;
    impl pjrt::KvStore for Nothing {
        fn get(&self, key: &str, _: std::time::Duration) -> Result<Vec<u8>, String> {
            Err(format!("no {key}"))
        }
        fn try_get(&self, _: &str) -> Result<Option<Vec<u8>>, String> {
            Ok(None)
        }
        fn put(&self, _: &str, _: &[u8]) -> Result<(), String> {
            Ok(())
        }
    }
    let store: std::sync::Arc<dyn pjrt::KvStore> = std::sync::Arc::new(Nothing);
    let c = pjrt::Client::new_with_kv_store(
        &api(),
        &[("cpu_device_count", pjrt::NamedValue::Int64(2))],
        store.clone(),
    )
    .unwrap();
    assert_eq!(c.devices().len(), 2);
    let exe = c.compile(ADD_2X3).unwrap();
    assert_eq!(exe.num_outputs(), 1);
    assert_eq!(std::sync::Arc::strong_count(&store), 2);
    drop(exe);
    drop(c);
    assert_eq!(std::sync::Arc::strong_count(&store), 1);
}
