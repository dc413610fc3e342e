//! A fake CRI runtime on a unix socket, for the client's tests: lists, statuses and (when
//! `events` is on) a `GetContainerEvents` stream fed by the test.

use std::{collections::HashMap, path::Path, pin::Pin, sync::Mutex};

use futures_util::Stream;
use k8s_cri::v1::{self as cri, runtime_service_server::RuntimeService};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

pub type Events = Pin<Box<dyn Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send>>;

#[derive(Default)]
pub struct Fake {
    pub containers: Mutex<Vec<cri::Container>>,
    pub pods: Mutex<HashMap<String, cri::PodSandboxStatus>>,
    /// `Some`: the runtime has `GetContainerEvents` (taken by the first subscriber).
    pub events: Mutex<Option<mpsc::Receiver<cri::ContainerEventResponse>>>,
}

impl Fake {
    /// Serves `fake` at `sock` until the returned task is aborted.
    pub fn serve(fake: std::sync::Arc<Fake>, sock: &Path) -> tokio::task::JoinHandle<()> {
        let _ = std::fs::remove_file(sock);
        let listener = tokio::net::UnixListener::bind(sock).expect("bind fake CRI socket");
        let incoming = futures_util::stream::unfold(listener, |l| async move {
            Some((l.accept().await.map(|(s, _)| s), l))
        });
        let svc = cri::runtime_service_server::RuntimeServiceServer::from_arc(fake);
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(incoming)
                .await;
        })
    }
}

pub fn container(
    id: &str,
    sandbox: &str,
    name: &str,
    state: cri::ContainerState,
) -> cri::Container {
    cri::Container {
        id: id.into(),
        pod_sandbox_id: sandbox.into(),
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: "registry.local/app:2".into(),
            ..Default::default()
        }),
        image_ref: "sha256:0123".into(),
        state: state as i32,
        labels: [("tier".to_owned(), "web".to_owned())].into(),
        ..Default::default()
    }
}

pub fn pod(id: &str, ns: &str, name: &str) -> cri::PodSandboxStatus {
    cri::PodSandboxStatus {
        id: id.into(),
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: ns.into(),
            attempt: 0,
        }),
        labels: [("app".to_owned(), name.to_owned())].into(),
        network: Some(cri::PodSandboxNetworkStatus {
            ip: "10.0.0.7".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl RuntimeService for Fake {
    type GetContainerEventsStream = Events;

    async fn version(
        &self,
        _: Request<cri::VersionRequest>,
    ) -> Result<Response<cri::VersionResponse>, Status> {
        Ok(Response::new(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "fake".into(),
            runtime_version: "1.0".into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn list_containers(
        &self,
        _: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        let containers = self
            .containers
            .lock()
            .map_err(|_| Status::internal("lock"))?
            .clone();
        Ok(Response::new(cri::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        r: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        let id = r.into_inner().container_id;
        let list = self
            .containers
            .lock()
            .map_err(|_| Status::internal("lock"))?;
        let c = list
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(|| Status::not_found("no such container"))?;
        Ok(Response::new(cri::ContainerStatusResponse {
            status: Some(cri::ContainerStatus {
                id: c.id.clone(),
                metadata: c.metadata.clone(),
                state: c.state,
                image: c.image.clone(),
                image_ref: c.image_ref.clone(),
                labels: c.labels.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn pod_sandbox_status(
        &self,
        r: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        let id = r.into_inner().pod_sandbox_id;
        let pods = self.pods.lock().map_err(|_| Status::internal("lock"))?;
        let p = pods
            .get(&id)
            .ok_or_else(|| Status::not_found("no such pod"))?;
        Ok(Response::new(cri::PodSandboxStatusResponse {
            status: Some(p.clone()),
            ..Default::default()
        }))
    }

    async fn get_container_events(
        &self,
        _: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Events>, Status> {
        let rx = self
            .events
            .lock()
            .map_err(|_| Status::internal("lock"))?
            .take();
        let Some(rx) = rx else {
            return Err(Status::unimplemented("no events here"));
        };
        let s = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|e| (Ok(e), rx))
        });
        Ok(Response::new(Box::pin(s)))
    }

    async fn run_pod_sandbox(
        &self,
        _: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn stop_pod_sandbox(
        &self,
        _: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn remove_pod_sandbox(
        &self,
        _: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_pod_sandbox(
        &self,
        _: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn create_container(
        &self,
        _: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn start_container(
        &self,
        _: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn stop_container(
        &self,
        _: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn remove_container(
        &self,
        _: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn update_container_resources(
        &self,
        _: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn reopen_container_log(
        &self,
        _: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn exec_sync(
        &self,
        _: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn exec(
        &self,
        _: Request<cri::ExecRequest>,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn attach(
        &self,
        _: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn port_forward(
        &self,
        _: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn container_stats(
        &self,
        _: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_container_stats(
        &self,
        _: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn pod_sandbox_stats(
        &self,
        _: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_pod_sandbox_stats(
        &self,
        _: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn update_runtime_config(
        &self,
        _: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn status(
        &self,
        _: Request<cri::StatusRequest>,
    ) -> Result<Response<cri::StatusResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn checkpoint_container(
        &self,
        _: Request<cri::CheckpointContainerRequest>,
    ) -> Result<Response<cri::CheckpointContainerResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_metric_descriptors(
        &self,
        _: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri::ListMetricDescriptorsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_pod_sandbox_metrics(
        &self,
        _: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn runtime_config(
        &self,
        _: Request<cri::RuntimeConfigRequest>,
    ) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
}
