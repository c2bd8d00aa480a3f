"""Typed request bodies for every Agora Cloud Recording endpoint, checked before anything is sent.

Field names on the wire are Agora's (camelCase, plus the few snake_case ones Agora uses: ``x_axis``,
``render_mode``, ``image_url``, ``async_stop``). ``check(mode)`` refuses what Agora would refuse
(``docs/agora.md`` §3.4-§3.8) with an :class:`AgoraRequestError` naming the wire path of the field, e.g.
``clientRequest.recordingConfig.maxIdleTime``. Bodies can be built in code or from JSON-shaped dicts with
:func:`from_json_dict`, which reports type errors the same way.

Secrets (storage keys, STS token, RTC token, decryption secret) never show in ``repr``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal, TypeVar

import msgspec

from workers.agora.errors import AgoraRequestError

Mode = Literal["individual", "mix", "web"]
MODES: tuple[Mode, ...] = ("individual", "mix", "web")

MAX_UID = 2**32 - 1
ALL_STREAMS = "#allstream#"
MAX_SUBSCRIPTIONS = 32
MAX_CUSTOM_WINDOWS = 17
MAX_PIXELS = 1920 * 1080
MAX_RTC_CNAME_BYTES = 64
MAX_WEB_CNAME_BYTES = 1024
# Channel names for RTC: letters, digits, space and these punctuation marks (§3.4, legacy 1013 rule).
_CNAME_RE = re.compile(r"^[A-Za-z0-9 !#$%&()+\-:;<=.>?@\[\]^_{|}~,]+$")
_UID_RE = re.compile(r"^[1-9][0-9]{0,9}$")
_COLOR_RE = re.compile(r"^#[0-9A-Fa-f]{6}$")
_PREFIX_DIR_RE = re.compile(r"^[A-Za-z0-9]+$")
STORAGE_VENDORS = (1, 2, 3, 5, 6, 7, 8, 11)
ACQUIRE_REGIONS = ("CN", "AP", "EU", "NA")
STREAM_MODES = ("default", "standard", "original")
WEB_RECORDER = "web_recorder_service"
RTMP_PUBLISH = "rtmp_publish_service"
ERROR_POLICIES = ("error_abort", "error_ignore")


def fail(field: str, message: str) -> AgoraRequestError:
    """The error for one bad field (returned, so callers write ``raise fail(...)``)."""
    return AgoraRequestError(field, message)


def check_range(field: str, value: float | None, low: float, high: float) -> None:
    """``value`` is absent or within ``low..high``."""
    if value is not None and not low <= value <= high:
        raise fail(field, f"must be between {low:g} and {high:g}, got {value:g}")


def check_choice(field: str, value: object, allowed: Iterable[object]) -> None:
    """``value`` is absent or one of ``allowed``."""
    allowed = tuple(allowed)
    if value is not None and value not in allowed:
        raise fail(field, f"must be one of {', '.join(map(str, allowed))}, got {value!r}")


def check_uid(field: str, uid: str) -> None:
    """A recorder or user uid: the decimal string of an integer 1..2^32-1."""
    if not isinstance(uid, str) or not _UID_RE.match(uid) or int(uid) > MAX_UID:
        raise fail(field, "must be a string holding an integer from 1 to 4294967295")


def check_cname(field: str, cname: str, mode: Mode | None) -> None:
    """RTC channel names are < 64 bytes of a limited charset; web mode only labels the task (≤ 1024 bytes)."""
    size = len(cname.encode())
    if size == 0:
        raise fail(field, "must not be empty")
    if mode == "web":
        if size > MAX_WEB_CNAME_BYTES:
            raise fail(field, f"must be at most {MAX_WEB_CNAME_BYTES} bytes in web mode")
        return
    if size >= MAX_RTC_CNAME_BYTES:
        raise fail(field, f"must be shorter than {MAX_RTC_CNAME_BYTES} bytes")
    if not _CNAME_RE.match(cname):
        raise fail(field, "may only hold letters, digits, space and !#$%&()+-:;<=.>?@[]^_{|}~,")


def check_uid_list(field: str, uids: list[str] | None) -> None:
    """A subscription list: ≤ 32 uids, or ``["#allstream#"]``."""
    if uids is None:
        return
    if not uids:
        raise fail(field, "must not be empty when given")
    if len(uids) > MAX_SUBSCRIPTIONS:
        raise fail(field, f"holds at most {MAX_SUBSCRIPTIONS} uids, got {len(uids)}")
    if ALL_STREAMS in uids:
        if len(uids) != 1:
            raise fail(field, f"{ALL_STREAMS!r} must be the only entry")
        return
    for index, uid in enumerate(uids):
        check_uid(f"{field}[{index}]", uid)


def check_exclusive(
    path: str, media: str, subscribe: list[str] | None, unsubscribe: list[str] | None
) -> None:
    """A white list and a black list of the same media exclude each other."""
    if subscribe is not None and unsubscribe is not None:
        raise fail(f"{path}.unsubscribe{media}Uids", f"cannot be combined with subscribe{media}Uids")


def check_url(field: str, url: str | None, schemes: tuple[str, ...]) -> None:
    """An absolute URL with one of ``schemes``."""
    if url is None:
        return
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in schemes or not rest:
        raise fail(field, f"must be an absolute {'/'.join(schemes)} URL")
    if len(url.encode()) > 1024:
        raise fail(field, "must be at most 1024 bytes")


class Body(msgspec.Struct, rename="camel", omit_defaults=True, forbid_unknown_fields=True, kw_only=True):
    """Base of all request bodies."""

    def to_json(self) -> dict[str, Any]:
        """The body as Agora receives it."""
        result: dict[str, Any] = msgspec.to_builtins(self)
        return result


_SECRET_FIELDS = ("access_key", "secret_key", "sts_token", "token", "secret")


def _redacted_repr(body: Body) -> str:
    shown = []
    for name in body.__struct_fields__:
        value = getattr(body, name)
        if value is None:
            continue
        shown.append(f"{name}={'***' if name in _SECRET_FIELDS else repr(value)}")
    return f"{type(body).__name__}({', '.join(shown)})"


class ExtensionParams(Body, kw_only=True):
    """``storageConfig.extensionParams``: server-side encryption, tags, S3-compatible endpoint."""

    sse: str | None = None
    tag: str | None = None
    endpoint: str | None = None


class StorageConfig(Body, kw_only=True):
    """Where Agora uploads the files (§3.5); keys and STS token never appear in ``repr``."""

    vendor: int
    region: int
    bucket: str
    access_key: str
    secret_key: str
    sts_token: str | None = None
    sts_expiration: int | None = None
    file_name_prefix: list[str] | None = None
    extension_params: ExtensionParams | None = None

    __repr__ = _redacted_repr

    def check(self, path: str) -> None:
        """Vendor, region, bucket, keys, prefix directories, extension parameters."""
        check_choice(f"{path}.vendor", self.vendor, STORAGE_VENDORS)
        check_range(f"{path}.region", self.region, 0, 100)
        if self.vendor == 11 and self.region != 0:
            raise fail(f"{path}.region", "must be 0 for S3-compatible storage (vendor 11)")
        for name in ("bucket", "access_key", "secret_key"):
            if not getattr(self, name):
                raise fail(f"{path}.{_camel(name)}", "must not be empty")
        if self.sts_token is not None and self.vendor not in (1, 2, 3):
            raise fail(f"{path}.stsToken", "is only supported for vendors 1, 2 and 3")
        if (self.sts_token is None) != (self.sts_expiration is None):
            raise fail(f"{path}.stsExpiration", "stsToken and stsExpiration go together")
        if self.file_name_prefix is not None:
            for index, directory in enumerate(self.file_name_prefix):
                if not _PREFIX_DIR_RE.match(directory):
                    raise fail(f"{path}.fileNamePrefix[{index}]", "must be letters and digits only")
            if len("/".join(self.file_name_prefix)) > 128:
                raise fail(f"{path}.fileNamePrefix", "must total at most 128 characters")
        params = self.extension_params
        if params is not None:
            check_choice(f"{path}.extensionParams.sse", params.sse, ("kms", "aes256"))
            if params.sse is not None and self.vendor != 1:
                raise fail(f"{path}.extensionParams.sse", "is only supported for Amazon S3 (vendor 1)")
            check_url(f"{path}.extensionParams.endpoint", params.endpoint, ("http", "https"))
        if self.vendor == 11 and (params is None or not params.endpoint):
            raise fail(
                f"{path}.extensionParams.endpoint", "is required for S3-compatible storage (vendor 11)"
            )


class LayoutConfig(Body, kw_only=True):
    """One window of a custom mix layout; positions and sizes are fractions of the canvas."""

    uid: str | None = None
    x_axis: float = msgspec.field(name="x_axis")
    y_axis: float = msgspec.field(name="y_axis")
    width: float
    height: float
    alpha: float | None = None
    render_mode: int | None = msgspec.field(default=None, name="render_mode")

    def check(self, path: str) -> None:
        """Uid, fractions within 0..1, render mode."""
        if self.uid is not None:
            check_uid(f"{path}.uid", self.uid)
        for name in ("x_axis", "y_axis", "width", "height", "alpha"):
            check_range(f"{path}.{name}", getattr(self, name), 0, 1)
        check_choice(f"{path}.render_mode", self.render_mode, (0, 1))


class BackgroundConfig(Body, kw_only=True):
    """A background image for one user's window in a mix layout."""

    uid: str
    image_url: str = msgspec.field(name="image_url")
    render_mode: int | None = msgspec.field(default=None, name="render_mode")

    def check(self, path: str) -> None:
        """Uid, HTTPS image, render mode."""
        check_uid(f"{path}.uid", self.uid)
        check_url(f"{path}.image_url", self.image_url, ("https",))
        check_choice(f"{path}.render_mode", self.render_mode, (0, 1))


class LayoutFields(Body, kw_only=True):
    """The layout fields shared by ``transcodingConfig`` (start) and ``updateLayout``."""

    max_resolution_uid: str | None = None
    mixed_video_layout: int | None = None
    background_color: str | None = None
    background_image: str | None = None
    default_user_background_image: str | None = None
    layout_config: list[LayoutConfig] | None = None
    background_config: list[BackgroundConfig] | None = None

    def check_layout(self, path: str) -> None:
        """Layout kind, colours, images, windows (≤ 17 in a custom layout)."""
        check_choice(f"{path}.mixedVideoLayout", self.mixed_video_layout, (0, 1, 2, 3))
        if self.max_resolution_uid is not None:
            check_uid(f"{path}.maxResolutionUid", self.max_resolution_uid)
        if self.background_color is not None and not _COLOR_RE.match(self.background_color):
            raise fail(f"{path}.backgroundColor", "must be an RGB colour like #000000")
        check_url(f"{path}.backgroundImage", self.background_image, ("http", "https"))
        check_url(f"{path}.defaultUserBackgroundImage", self.default_user_background_image, ("http", "https"))
        if self.layout_config is not None:
            if self.mixed_video_layout != 3:
                raise fail(f"{path}.layoutConfig", "is only used with mixedVideoLayout 3 (custom)")
            if len(self.layout_config) > MAX_CUSTOM_WINDOWS:
                raise fail(f"{path}.layoutConfig", f"holds at most {MAX_CUSTOM_WINDOWS} windows")
            for index, window in enumerate(self.layout_config):
                window.check(f"{path}.layoutConfig[{index}]")
        for index, background in enumerate(self.background_config or ()):
            background.check(f"{path}.backgroundConfig[{index}]")


class TranscodingConfig(LayoutFields, kw_only=True):
    """Video of a mix recording: canvas size, frame rate, bit rate and layout."""

    width: int
    height: int
    fps: int
    bitrate: int

    def check(self, path: str) -> None:
        """Canvas ≤ 1920×1080, sensible rates, then the layout."""
        check_range(f"{path}.width", self.width, 16, 1920)
        check_range(f"{path}.height", self.height, 16, 1920)
        if self.width * self.height > MAX_PIXELS:
            raise fail(f"{path}.width", "width × height must not exceed 1920 × 1080")
        check_range(f"{path}.fps", self.fps, 1, 30)
        check_range(f"{path}.bitrate", self.bitrate, 1, 10_000_000)
        self.check_layout(path)


class RecordingConfig(Body, kw_only=True):
    """What to record in individual and mix modes (§3.5)."""

    channel_type: int | None = None
    decryption_mode: int | None = None
    secret: str | None = None
    salt: str | None = None
    max_idle_time: int | None = None
    stream_types: int | None = None
    video_stream_type: int | None = None
    subscribe_audio_uids: list[str] | None = None
    unsubscribe_audio_uids: list[str] | None = None
    subscribe_video_uids: list[str] | None = None
    unsubscribe_video_uids: list[str] | None = None
    subscribe_uid_group: int | None = None
    stream_mode: str | None = None
    audio_profile: int | None = None
    transcoding_config: TranscodingConfig | None = None

    __repr__ = _redacted_repr

    def check(self, path: str, mode: Mode) -> None:
        """Enumerations, idle time, subscriptions and mode-specific fields."""
        check_choice(f"{path}.channelType", self.channel_type, (0, 1))
        check_choice(f"{path}.decryptionMode", self.decryption_mode, range(9))
        if self.decryption_mode and not self.secret:
            raise fail(f"{path}.secret", "is required when decryptionMode is set")
        if self.decryption_mode in (7, 8) and not self.salt:
            raise fail(f"{path}.salt", "is required with decryptionMode 7 and 8")
        check_range(f"{path}.maxIdleTime", self.max_idle_time, 5, 2_592_000)
        check_choice(f"{path}.streamTypes", self.stream_types, (0, 1, 2))
        check_choice(f"{path}.videoStreamType", self.video_stream_type, (0, 1))
        check_choice(f"{path}.subscribeUidGroup", self.subscribe_uid_group, range(6))
        check_choice(f"{path}.streamMode", self.stream_mode, STREAM_MODES)
        check_choice(f"{path}.audioProfile", self.audio_profile, (0, 1, 2))
        check_subscriptions(path, self)
        if mode != "individual":
            for name in ("subscribe_uid_group", "stream_mode"):
                if getattr(self, name) is not None:
                    raise fail(f"{path}.{_camel(name)}", "is only used in individual mode")
        if mode != "mix":
            if self.transcoding_config is not None:
                raise fail(f"{path}.transcodingConfig", "is only used in mix mode")
            if self.audio_profile is not None:
                raise fail(f"{path}.audioProfile", "is only used in mix mode")
        if self.transcoding_config is not None:
            self.transcoding_config.check(f"{path}.transcodingConfig")


def check_subscriptions(path: str, lists: Any) -> None:
    """The four subscription lists of ``recordingConfig`` or of an update (same names, same rules)."""
    for media in ("Audio", "Video"):
        sub = getattr(lists, f"subscribe_{media.lower()}_uids", None)
        unsub = getattr(lists, f"unsubscribe_{media.lower()}_uids", None)
        check_uid_list(f"{path}.subscribe{media}Uids", sub)
        check_uid_list(f"{path}.unsubscribe{media}Uids", unsub)
        check_exclusive(path, media, sub, unsub)


class RecordingFileConfig(Body, kw_only=True):
    """Which file types to produce: ``["hls"]`` or ``["hls", "mp4"]`` (mix and web)."""

    av_file_type: list[str]

    def check(self, path: str, mode: Mode) -> None:
        """HLS always; MP4 only beside HLS and only in mix and web modes."""
        field = f"{path}.avFileType"
        kinds = self.av_file_type
        for index, kind in enumerate(kinds):
            check_choice(f"{field}[{index}]", kind, ("hls", "mp4"))
        if len(set(kinds)) != len(kinds):
            raise fail(field, "must not repeat a file type")
        if "hls" not in kinds:
            raise fail(field, 'must contain "hls" ("mp4" alone is not allowed)')
        if "mp4" in kinds and mode == "individual":
            raise fail(field, '"mp4" is only available in mix and web modes')


class SnapshotConfig(Body, kw_only=True):
    """Screenshots (individual mode only)."""

    capture_interval: int | None = None
    file_type: list[str]

    def check(self, path: str) -> None:
        """Interval 5..3600 s, JPG files."""
        check_range(f"{path}.captureInterval", self.capture_interval, 5, 3600)
        if self.file_type != ["jpg"]:
            raise fail(f"{path}.fileType", 'must be ["jpg"]')


class RtmpOutput(Body, kw_only=True):
    """One CDN destination."""

    rtmp_url: str

    def check(self, path: str) -> None:
        """An rtmp:// or rtmps:// URL."""
        check_url(f"{path}.rtmpUrl", self.rtmp_url, ("rtmp", "rtmps"))


class ServiceParam(Body, kw_only=True):
    """``serviceParam`` of a web recording extension service (web recorder or RTMP publisher)."""

    url: str | None = None
    audio_profile: int | None = None
    video_width: int | None = None
    video_height: int | None = None
    max_recording_hour: int | None = None
    video_bitrate: int | None = None
    video_fps: int | None = None
    mobile: bool | None = None
    max_video_duration: int | None = None
    onhold: bool | None = None
    ready_timeout: int | None = None
    outputs: list[RtmpOutput] | None = None

    def check_web_recorder(self, path: str) -> None:
        """Page URL, video size ≤ 1920×1080, hour/duration/fps/ready-timeout ranges."""
        if not self.url:
            raise fail(f"{path}.url", "is required for web_recorder_service")
        check_url(f"{path}.url", self.url, ("http", "https"))
        check_choice(f"{path}.audioProfile", self.audio_profile, (0, 1, 2))
        check_range(f"{path}.videoWidth", self.video_width, 240, 1920)
        check_range(f"{path}.videoHeight", self.video_height, 240, 1920)
        if self.video_width and self.video_height and self.video_width * self.video_height > MAX_PIXELS:
            raise fail(f"{path}.videoWidth", "videoWidth × videoHeight must not exceed 1920 × 1080")
        check_range(f"{path}.maxRecordingHour", self.max_recording_hour, 1, 720)
        check_range(f"{path}.videoBitrate", self.video_bitrate, 50, 10_000)
        check_range(f"{path}.videoFps", self.video_fps, 5, 60)
        check_range(f"{path}.maxVideoDuration", self.max_video_duration, 30, 240)
        check_range(f"{path}.readyTimeout", self.ready_timeout, 0, 60)
        if self.outputs is not None:
            raise fail(f"{path}.outputs", "belongs to rtmp_publish_service")

    def check_rtmp_publisher(self, path: str) -> None:
        """Exactly one RTMP(S) output."""
        if not self.outputs or len(self.outputs) != 1:
            raise fail(f"{path}.outputs", "must hold exactly one CDN output")
        self.outputs[0].check(f"{path}.outputs[0]")
        if self.url is not None:
            raise fail(f"{path}.url", "belongs to web_recorder_service")


class ExtensionService(Body, kw_only=True):
    """One extension service of a web recording."""

    service_name: str
    error_handle_policy: str | None = None
    service_param: ServiceParam

    def check(self, path: str) -> None:
        """Known service, known policy, its parameters."""
        check_choice(f"{path}.serviceName", self.service_name, (WEB_RECORDER, RTMP_PUBLISH))
        check_choice(f"{path}.errorHandlePolicy", self.error_handle_policy, ERROR_POLICIES)
        if self.service_name == WEB_RECORDER:
            if self.error_handle_policy not in (None, "error_abort"):
                raise fail(f"{path}.errorHandlePolicy", "must be error_abort for web_recorder_service")
            self.service_param.check_web_recorder(f"{path}.serviceParam")
        else:
            self.service_param.check_rtmp_publisher(f"{path}.serviceParam")


class ExtensionServiceConfig(Body, kw_only=True):
    """Web page recording (and CDN push) services."""

    error_handle_policy: str | None = None
    extension_services: list[ExtensionService]

    def check(self, path: str) -> None:
        """One web recorder, at most one RTMP publisher."""
        check_choice(f"{path}.errorHandlePolicy", self.error_handle_policy, ("error_abort",))
        names = [service.service_name for service in self.extension_services]
        if names.count(WEB_RECORDER) != 1:
            raise fail(f"{path}.extensionServices", "must hold exactly one web_recorder_service")
        if names.count(RTMP_PUBLISH) > 1:
            raise fail(f"{path}.extensionServices", "holds at most one rtmp_publish_service")
        for index, service in enumerate(self.extension_services):
            service.check(f"{path}.extensionServices[{index}]")


class AppsCollection(Body, kw_only=True):
    """Postponed transcoding switch (individual mode, acquire scene 2)."""

    combination_policy: str

    def check(self, path: str) -> None:
        """``default`` or ``postpone_transcoding``."""
        check_choice(
            f"{path}.combinationPolicy", self.combination_policy, ("default", "postpone_transcoding")
        )


class TransConfig(Body, kw_only=True):
    """``transcodeOptions.transConfig``."""

    trans_mode: str


class Container(Body, kw_only=True):
    """``transcodeOptions.container``."""

    format: str


class AudioOptions(Body, kw_only=True):
    """``transcodeOptions.audio``."""

    sample_rate: str | None = None
    bitrate: str | None = None
    channels: str | None = None


class TranscodeOptions(Body, kw_only=True):
    """Postponed transcoding / delayed audio mixing output."""

    trans_config: TransConfig
    container: Container | None = None
    audio: AudioOptions | None = None

    def check(self, path: str) -> None:
        """Known mode, container and audio options."""
        check_choice(
            f"{path}.transConfig.transMode", self.trans_config.trans_mode, ("postponeTranscoding", "audioMix")
        )
        if self.container is not None:
            check_choice(f"{path}.container.format", self.container.format, ("mp4", "mp3", "m4a", "aac"))
        if self.audio is not None:
            check_choice(f"{path}.audio.sampleRate", self.audio.sample_rate, ("48000", "32000", "16000"))
            check_choice(f"{path}.audio.channels", self.audio.channels, ("1", "2"))


class StartClientRequest(Body, kw_only=True):
    """``clientRequest`` of start (and of acquire's ``startParameter``)."""

    token: str | None = None
    recording_config: RecordingConfig | None = None
    recording_file_config: RecordingFileConfig | None = None
    snapshot_config: SnapshotConfig | None = None
    storage_config: StorageConfig
    extension_service_config: ExtensionServiceConfig | None = None
    apps_collection: AppsCollection | None = None
    transcode_options: TranscodeOptions | None = None

    __repr__ = _redacted_repr

    def check(self, path: str, mode: Mode) -> None:
        """Every part, and which parts each mode takes."""
        self.storage_config.check(f"{path}.storageConfig")
        if mode == "web":
            if self.extension_service_config is None:
                raise fail(f"{path}.extensionServiceConfig", "is required in web mode")
            self.extension_service_config.check(f"{path}.extensionServiceConfig")
            for name in ("recording_config", "snapshot_config", "apps_collection", "transcode_options"):
                if getattr(self, name) is not None:
                    raise fail(f"{path}.{_camel(name)}", "is not used in web mode")
        else:
            if self.extension_service_config is not None:
                raise fail(f"{path}.extensionServiceConfig", "is only used in web mode")
            if self.recording_config is None:
                raise fail(f"{path}.recordingConfig", f"is required in {mode} mode")
            self.recording_config.check(f"{path}.recordingConfig", mode)
        if self.recording_file_config is not None:
            self.recording_file_config.check(f"{path}.recordingFileConfig", mode)
        if self.snapshot_config is not None:
            if mode != "individual":
                raise fail(f"{path}.snapshotConfig", "is only available in individual mode")
            self.snapshot_config.check(f"{path}.snapshotConfig")
            stream_types = self.recording_config.stream_types if self.recording_config else None
            if stream_types == 0:
                raise fail(
                    f"{path}.recordingConfig.streamTypes", "screenshots need video (streamTypes 1 or 2)"
                )
        for name in ("apps_collection", "transcode_options"):
            part = getattr(self, name)
            if part is not None:
                if mode != "individual":
                    raise fail(f"{path}.{_camel(name)}", "is only available in individual mode")
                part.check(f"{path}.{_camel(name)}")


class AcquireClientRequest(Body, kw_only=True):
    """``clientRequest`` of acquire."""

    scene: int | None = None
    resource_expired_hour: int | None = None
    exclude_resource_ids: list[str] | None = None
    region: str | None = None
    region_affinity: int | None = None
    start_parameter: StartClientRequest | None = None

    def check(self, path: str, mode: Mode | None) -> None:
        """Scene fits the mode, lifetime 1..720 h, region codes."""
        check_choice(f"{path}.scene", self.scene, (0, 1, 2))
        if mode == "web" and self.scene != 1:
            raise fail(f"{path}.scene", "must be 1 for web page recording")
        if mode in ("individual", "mix") and self.scene == 1:
            raise fail(f"{path}.scene", f"scene 1 is web page recording, not {mode}")
        if mode == "mix" and self.scene == 2:
            raise fail(f"{path}.scene", "scene 2 (postponed transcoding) is for individual mode")
        check_range(f"{path}.resourceExpiredHour", self.resource_expired_hour, 1, 720)
        check_choice(f"{path}.region", self.region, ACQUIRE_REGIONS)
        check_choice(f"{path}.regionAffinity", self.region_affinity, range(5))
        if self.start_parameter is not None and mode is not None:
            self.start_parameter.check(f"{path}.startParameter", mode)


class ChannelBody(Body, kw_only=True):
    """Every body names the channel and the recorder's uid."""

    cname: str
    uid: str

    def check_channel(self, mode: Mode | None) -> None:
        """cname and uid rules (§3.4)."""
        check_cname("cname", self.cname, mode)
        check_uid("uid", self.uid)


class AcquireRequest(ChannelBody, kw_only=True):
    """Body of ``acquire``."""

    client_request: AcquireClientRequest = msgspec.field(default_factory=AcquireClientRequest)

    def check(self, mode: Mode | None = None) -> None:
        """Channel, uid, and the client request for the mode about to be started."""
        self.check_channel(mode)
        self.client_request.check("clientRequest", mode)


class StartRequest(ChannelBody, kw_only=True):
    """Body of ``start``."""

    client_request: StartClientRequest

    def check(self, mode: Mode) -> None:
        """Channel, uid and the whole recording configuration."""
        self.check_channel(mode)
        self.client_request.check("clientRequest", mode)


class UidLists(Body, kw_only=True):
    """``audioUidList`` / ``videoUidList`` of an update."""

    subscribe_audio_uids: list[str] | None = None
    unsubscribe_audio_uids: list[str] | None = None
    subscribe_video_uids: list[str] | None = None
    unsubscribe_video_uids: list[str] | None = None


class StreamSubscribe(Body, kw_only=True):
    """New subscription lists (individual and mix)."""

    audio_uid_list: UidLists | None = None
    video_uid_list: UidLists | None = None

    def check(self, path: str) -> None:
        """Each list carries only its own media, with the usual list rules."""
        for media, lists in (("audio", self.audio_uid_list), ("video", self.video_uid_list)):
            if lists is None:
                continue
            other = "video" if media == "audio" else "audio"
            for name in (f"subscribe_{other}_uids", f"unsubscribe_{other}_uids"):
                if getattr(lists, name) is not None:
                    raise fail(f"{path}.{media}UidList.{_camel(name)}", f"belongs in {other}UidList")
            check_subscriptions(f"{path}.{media}UidList", lists)


class WebRecordingConfig(Body, kw_only=True):
    """Pause or resume a web page recording."""

    onhold: bool


class RtmpPublishConfig(Body, kw_only=True):
    """Replace the CDN destination of a web page recording."""

    outputs: list[RtmpOutput]


class UpdateClientRequest(Body, kw_only=True):
    """``clientRequest`` of update."""

    stream_subscribe: StreamSubscribe | None = None
    web_recording_config: WebRecordingConfig | None = None
    rtmp_publish_config: RtmpPublishConfig | None = None
    storage_config: StorageConfig | None = None

    def check(self, path: str, mode: Mode) -> None:
        """Something to change, and only what the mode supports."""
        parts = ("stream_subscribe", "web_recording_config", "rtmp_publish_config", "storage_config")
        if all(getattr(self, name) is None for name in parts):
            raise fail(
                path,
                "must change something: streamSubscribe, webRecordingConfig, rtmpPublishConfig or storageConfig",
            )
        if self.stream_subscribe is not None:
            if mode == "web":
                raise fail(f"{path}.streamSubscribe", "is not used in web mode")
            self.stream_subscribe.check(f"{path}.streamSubscribe")
        for name in ("web_recording_config", "rtmp_publish_config"):
            if getattr(self, name) is not None and mode != "web":
                raise fail(f"{path}.{_camel(name)}", "is only used in web mode")
        if self.rtmp_publish_config is not None:
            outputs = self.rtmp_publish_config.outputs
            if len(outputs) != 1:
                raise fail(f"{path}.rtmpPublishConfig.outputs", "must hold exactly one CDN output")
            outputs[0].check(f"{path}.rtmpPublishConfig.outputs[0]")
        if self.storage_config is not None:
            self.storage_config.check(f"{path}.storageConfig")


class UpdateRequest(ChannelBody, kw_only=True):
    """Body of ``update``."""

    client_request: UpdateClientRequest

    def check(self, mode: Mode) -> None:
        """Channel, uid and the change."""
        self.check_channel(mode)
        self.client_request.check("clientRequest", mode)


class UpdateLayoutClientRequest(LayoutFields, kw_only=True):
    """``clientRequest`` of updateLayout: the whole new layout (unset fields revert to defaults)."""

    def check(self, path: str) -> None:
        """The layout rules of ``transcodingConfig``."""
        self.check_layout(path)


class UpdateLayoutRequest(ChannelBody, kw_only=True):
    """Body of ``updateLayout`` (mix mode only)."""

    client_request: UpdateLayoutClientRequest

    def check(self, mode: Mode = "mix") -> None:
        """Channel, uid and the layout."""
        if mode != "mix":
            raise fail("mode", "updateLayout is only available in mix mode")
        self.check_channel(mode)
        self.client_request.check("clientRequest")


class StopClientRequest(Body, kw_only=True):
    """``clientRequest`` of stop."""

    async_stop: bool = msgspec.field(default=False, name="async_stop")


class StopRequest(ChannelBody, kw_only=True):
    """Body of ``stop``."""

    client_request: StopClientRequest = msgspec.field(default_factory=StopClientRequest)

    def to_json(self) -> dict[str, Any]:
        """``async_stop`` is always sent, so Agora never has to guess."""
        body = super().to_json()
        body["clientRequest"] = {"async_stop": self.client_request.async_stop}
        return body

    def check(self, mode: Mode) -> None:
        """Channel and uid."""
        self.check_channel(mode)


B = TypeVar("B", bound=Body)


def from_json_dict(kind: type[B], data: object, path: str = "") -> B:
    """Build a body from JSON-shaped data; type errors name the wire path (e.g. ``recordingConfig.maxIdleTime``)."""
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        message, field = explain_validation_error(exc)
        field = ".".join(part for part in (path, field) if part) or path or "body"
        raise AgoraRequestError(field, message) from None


_NAMED_FIELD = re.compile(r"(?:missing required|unknown) field `([^`]+)`")


def explain_validation_error(exc: msgspec.ValidationError) -> tuple[str, str]:
    """(message, dotted field path) of a msgspec validation error, naming missing and unknown fields too."""
    text = str(exc)
    message, sep, where = text.rpartition(" - at `")
    if not sep:
        message, where = text, ""
    field = where.rstrip("`").removeprefix("$").lstrip(".")
    named = _NAMED_FIELD.search(message)
    if named:
        field = ".".join(part for part in (field, named.group(1)) if part)
    return message, field


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def storage_from_settings(settings: Any) -> StorageConfig | None:
    """The default ``storageConfig`` from ``AGORA_STORAGE_*`` (None when no bucket is configured)."""
    if not settings.storage_bucket or settings.storage_vendor is None:
        return None
    return StorageConfig(
        vendor=settings.storage_vendor,
        region=settings.storage_region or 0,
        bucket=settings.storage_bucket,
        access_key=settings.storage_access_key,
        secret_key=settings.storage_secret_key,
        file_name_prefix=list(settings.storage_prefix) or None,
    )
