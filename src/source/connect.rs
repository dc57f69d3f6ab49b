//! Building the API client from the kubeconfig the way kubectl finds it.

use std::path::PathBuf;

use kube::config::{Config, KubeConfigOptions, Kubeconfig};

use crate::config::{Setting, Settings};

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("kubeconfig {} ({origin}): {source}", path.display())]
    Kubeconfig {
        path: PathBuf,
        origin: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("kubeconfig from KUBECONFIG={paths}: {source}")]
    KubeconfigEnv {
        paths: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error(
        "no kubeconfig found (KUBECONFIG is not set and ~/.kube/config cannot be used: {kubeconfig}) \
         and not running in a cluster ({in_cluster}); set kubeconfig in the config file, \
         KUBE_EVENT_PIPE_KUBECONFIG or --kubeconfig"
    )]
    NothingFound {
        kubeconfig: String,
        in_cluster: String,
    },
    #[error("cannot build the API client: {0}")]
    Client(#[source] kube::Error),
}

/// kube's own retry layer retries 429/503 silently for minutes; the source backs off and logs
/// each failure itself, so that layer is turned off. The idle bound of a watch is also ours.
pub async fn client(settings: &Settings) -> Result<kube::Client, ConnectError> {
    let mut config = config(settings).await?;
    config.default_retry = false;
    config.read_timeout = None;
    // Without a CA in the kubeconfig, kube reads the system trust store (about 150 files in
    // /etc/ssl/certs, 15–25 ms at every start). A plain-HTTP server (`kubectl proxy`, a local
    // insecure port) never uses it.
    if config.cluster_url.scheme_str() == Some("http") && config.root_cert.is_none() {
        config.root_cert = Some(Vec::new());
    }
    kube::Client::try_from(config).map_err(ConnectError::Client)
}

async fn config(settings: &Settings) -> Result<Config, ConnectError> {
    let options = KubeConfigOptions {
        context: settings.context.as_ref().map(|c| c.value.clone()),
        ..Default::default()
    };
    if let Some(Setting {
        value: path,
        origin,
    }) = &settings.kubeconfig
    {
        let wrap = |source| ConnectError::Kubeconfig {
            path: path.clone(),
            origin: origin.to_string(),
            source,
        };
        let kubeconfig = Kubeconfig::read_from(path).map_err(wrap)?;
        return Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(wrap);
    }
    if let Ok(paths) = std::env::var("KUBECONFIG")
        && !paths.is_empty()
    {
        return Config::from_kubeconfig(&options)
            .await
            .map_err(|source| ConnectError::KubeconfigEnv { paths, source });
    }
    // kubectl's order: ~/.kube/config, then the pod's service account.
    match Config::from_kubeconfig(&options).await {
        Ok(config) => Ok(config),
        Err(kubeconfig) => Config::incluster().map_err(|in_cluster| ConnectError::NothingFound {
            kubeconfig: kubeconfig.to_string(),
            in_cluster: in_cluster.to_string(),
        }),
    }
}
