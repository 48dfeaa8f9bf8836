//! Vault hot path: encrypt and decrypt of a 164-byte provider key with the data key unwrapped and
//! cached (no database access). Targets: decrypt ≤ 2 µs, encrypt ≤ 5 µs on a 2-core machine.

use criterion::{Criterion, criterion_group, criterion_main};
use keyward::credential::CredentialScope;
use keyward_server::config::DatabaseUrl;
use keyward_server::vault::{CredentialContext, Vault, master_key::MasterKey};
use secrecy::SecretString;
use std::hint::black_box;

fn vault_bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = std::env::temp_dir().join(format!("kw-bench-{}", uuid::Uuid::new_v4()));
    let url = format!("sqlite://{}/bench.db", dir.display());
    let vault = rt.block_on(async {
        let db = keyward_server::db::connect_url(&DatabaseUrl::new(url), 2)
            .await
            .unwrap();
        keyward_server::db::migrate(&db).await.unwrap();
        Vault::open(db, &MasterKey::generate().unwrap())
            .await
            .unwrap()
    });
    let ws = uuid::Uuid::new_v4();
    let ctx = CredentialContext {
        credential_id: uuid::Uuid::new_v4(),
        workspace_id: Some(ws),
        scope: CredentialScope::Workspace,
        owner_id: ws,
        provider: "openai".into(),
        base_url: "https://api.openai.com/v1".into(),
    };
    // 164 bytes: the length of a current OpenAI project key.
    let key: String = "sk-proj-"
        .chars()
        .chain(std::iter::repeat_n('x', 156))
        .collect();
    assert_eq!(key.len(), 164);
    let secret = SecretString::from(key);
    let (blob, _) = vault.encrypt(&ctx, &secret).unwrap();

    c.bench_function("vault/encrypt_164B", |b| {
        b.iter(|| vault.encrypt(black_box(&ctx), black_box(&secret)).unwrap())
    });
    c.bench_function("vault/decrypt_164B_warm", |b| {
        b.iter(|| {
            vault
                .decrypt_cached(black_box(&ctx), black_box(&blob))
                .unwrap()
        })
    });
    std::fs::remove_dir_all(dir).ok();
}

criterion_group!(benches, vault_bench);
criterion_main!(benches);
