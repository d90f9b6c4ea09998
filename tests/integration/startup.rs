//! What an operator sees when the gateway cannot start or a command cannot
//! run: each refusal names what it is about, and nothing is created by a
//! command that refuses.

use std::path::Path;

use crate::common::{emulator_env, free_port, fresh_id, run_binary, ChildGateway};

fn serve_args<'a>(listen: &'a str, data: &'a str) -> Vec<&'a str> {
    vec![
        "serve",
        "--insecure-no-auth",
        "--listen",
        listen,
        "--data-dir",
        data,
    ]
}

#[test]
fn unknown_variables_and_file_keys_stop_every_command_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let (code, _, err) = run_binary(&serve_args(&listen, data), &[("TG_LISEN", "0.0.0.0:1")]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("unknown environment variable(s) TG_LISEN"),
        "{err}"
    );
    let (code, _, err) = run_binary(&["openapi"], &[("TG_S3_BUCKT", "b")]);
    assert_ne!(code, Some(0), "every command reads the same configuration");
    assert!(err.contains("TG_S3_BUCKT"), "{err}");

    let file = dir.path().join("tg.toml");
    std::fs::write(&file, "lisen = \"127.0.0.1:1\"\nLISTEN = \"127.0.0.1:2\"\n").unwrap();
    let mut args = vec!["--config", file.to_str().unwrap()];
    args.extend(serve_args(&listen, data));
    let (code, _, err) = run_binary(&args, &[]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("unknown key(s) \"LISTEN\", \"lisen\""),
        "{err}"
    );
    assert!(!Path::new(data).exists(), "a refused start creates nothing");
}

#[test]
fn values_that_cannot_work_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let listen = format!("127.0.0.1:{}", free_port());
    for (var, value, message) in [
        (
            "TG_REQUEST_TIMEOUT_SECS",
            "0",
            "request_timeout_secs must be positive",
        ),
        ("TG_MAX_IN_FLIGHT", "0", "max_in_flight must be positive"),
        ("TG_LOG", "=[", "log filter"),
        (
            "TG_STORAGE",
            "s4",
            "found `s4`, expected ``embedded` or `s3``",
        ),
    ] {
        let (code, _, err) = run_binary(
            &serve_args(&listen, data.to_str().unwrap()),
            &[(var, value)],
        );
        assert_ne!(code, Some(0), "{var}={value}");
        assert!(err.contains(message), "{var}={value}: {err}");
    }
}

#[tokio::test]
async fn a_second_gateway_on_one_data_directory_or_one_address_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = ChildGateway::start(&data, &[]).await;
    let taken = first.base_url.trim_start_matches("http://").to_string();
    let other = format!("127.0.0.1:{}", free_port());
    let (code, _, err) = run_binary(&serve_args(&other, data.to_str().unwrap()), &[]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains(&format!("{}", data.display()))
            && err.contains("one process per data directory"),
        "{err}"
    );
    let fresh = dir.path().join("other");
    let (code, _, err) = run_binary(&serve_args(&taken, fresh.to_str().unwrap()), &[]);
    assert_ne!(code, Some(0));
    assert!(err.contains(&format!("cannot listen on {taken}")), "{err}");
}

#[test]
fn compact_without_a_gateway_refuses_a_directory_that_holds_no_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("nothing-here");
    let listen = format!("127.0.0.1:{}", free_port());
    let (code, stdout, err) = run_binary(
        &[
            "compact",
            "--task",
            "t1",
            "--data-dir",
            empty.to_str().unwrap(),
        ],
        &[("TG_LISTEN", &listen)],
    );
    assert_ne!(code, Some(0), "{stdout}");
    assert!(err.contains("holds no catalog"), "{err}");
    assert!(!empty.exists(), "nothing was created");
}

#[tokio::test]
async fn text_logs_written_to_a_file_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let gw = ChildGateway::start(
        &dir.path().join("data"),
        &[("TG_LOG_FORMAT", "text"), ("TG_LOG", "info")],
    )
    .await;
    let log = gw.log.clone();
    let http = reqwest::Client::new();
    http.get(format!("{}/healthz", gw.base_url))
        .send()
        .await
        .unwrap();
    gw.terminate();
    let text = std::fs::read(&log).unwrap();
    assert!(!text.is_empty());
    assert!(
        !text.contains(&0x1b),
        "ANSI escape in {}",
        String::from_utf8_lossy(&text)
    );
}

#[test]
fn missing_aws_credentials_are_said_as_such() {
    let test = "missing_aws_credentials_are_said_as_such";
    let (Some(s3), Some(bucket), Some(dynamodb)) = (
        emulator_env("TG_TEST_S3_ENDPOINT", test),
        emulator_env("TG_TEST_S3_BUCKET", test),
        emulator_env("TG_TEST_DYNAMODB_ENDPOINT", test),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let data = dir.path().join("data");
    let listen = format!("127.0.0.1:{}", free_port());
    let prefix = fresh_id("creds");
    for (what, env) in [
        (
            "S3",
            vec![
                ("TG_STORAGE", "s3"),
                ("TG_S3_BUCKET", bucket.as_str()),
                ("TG_S3_ENDPOINT_URL", s3.as_str()),
                ("TG_S3_FORCE_PATH_STYLE", "true"),
            ],
        ),
        (
            "DynamoDB",
            vec![
                ("TG_CATALOG", "dynamodb"),
                ("TG_DYNAMODB_ENDPOINT_URL", dynamodb.as_str()),
                ("TG_DYNAMODB_TABLE_PREFIX", prefix.as_str()),
            ],
        ),
    ] {
        let mut cmd = std::process::Command::new(crate::common::gateway_bin());
        cmd.args(serve_args(&listen, data.to_str().unwrap()))
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env("HOME", &home)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_REGION", "us-east-1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}");
        // Said first, in operator terms; the SDK's own account follows as the cause.
        let said = err.find("no AWS credentials found");
        assert!(said.is_some(), "{what}: {err}");
        let cause = err.find("dispatch failure").unwrap_or(usize::MAX);
        assert!(said < Some(cause), "{what}: {err}");
    }
}
