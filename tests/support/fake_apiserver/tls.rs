//! TLS material: a freshly generated CA, the server certificate (expired on request) and a
//! client certificate.

use std::sync::Arc;

use tokio_rustls::rustls;

use super::{ClientAuth, FakeApiServer};

pub(super) struct TlsMaterial {
    pub(super) ca_pem: String,
    pub(super) client_cert_pem: String,
    pub(super) client_key_pem: String,
    pub(super) server_config: Arc<rustls::ServerConfig>,
}

impl FakeApiServer {
    /// PEM of the generated CA (TLS only).
    pub fn ca_pem(&self) -> Option<String> {
        self.tls.as_ref().map(|t| t.ca_pem.clone())
    }

    /// PEM of a client certificate signed by the CA, CN `fake-client` (TLS only).
    pub fn client_cert_pem(&self) -> Option<String> {
        self.tls.as_ref().map(|t| t.client_cert_pem.clone())
    }

    /// PEM (PKCS#8) of the client certificate's key (TLS only).
    pub fn client_key_pem(&self) -> Option<String> {
        self.tls.as_ref().map(|t| t.client_key_pem.clone())
    }
}

pub(super) fn make_tls(client_auth: ClientAuth, expired: bool) -> TlsMaterial {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "fake-apiserver-ca");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().expect("server key");
    let mut sp = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("server params");
    sp.distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    sp.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    if expired {
        sp.not_before = rcgen::date_time_ymd(2020, 1, 1);
        sp.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let server_cert = sp.signed_by(&server_key, &issuer).expect("server cert");

    let client_key = KeyPair::generate().expect("client key");
    let mut cp = CertificateParams::new(Vec::<String>::new()).expect("client params");
    cp.distinguished_name
        .push(DnType::CommonName, "fake-client");
    cp.distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    cp.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = cp.signed_by(&client_key, &issuer).expect("client cert");

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions");
    let builder = match client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Optional | ClientAuth::Required => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca_cert.der().clone()).expect("ca root");
            let vb = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let vb = if client_auth == ClientAuth::Optional {
                vb.allow_unauthenticated()
            } else {
                vb
            };
            builder.with_client_cert_verifier(vb.build().expect("client verifier"))
        }
    };
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into());
    let mut config = builder
        .with_single_cert(
            vec![server_cert.der().clone(), ca_cert.der().clone()],
            key_der,
        )
        .expect("server tls config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsMaterial {
        ca_pem: ca_cert.pem(),
        client_cert_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
        server_config: Arc::new(config),
    }
}
