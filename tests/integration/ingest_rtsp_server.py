"""A real RTSP server on loopback for ingest's reconnect test, from Debian's GStreamer packages.

Run with the SYSTEM Python (``/usr/bin/python3``), which sees Debian's PyGObject; needs the apt
packages ``python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
gstreamer1.0-plugins-good``. Serves one JPEG, looped as Motion-JPEG over RTP, at
``rtsp://127.0.0.1:PORT/cam``; prints READY when it listens and stops on SIGTERM.

    /usr/bin/python3 ingest_rtsp_server.py PORT IMAGE.jpg FPS
"""

import signal
import sys

import gi  # type: ignore[import-not-found]

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # type: ignore[import-not-found]  # noqa: E402


def main() -> None:
    port, image, fps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( multifilesrc location={image} loop=true caps=image/jpeg,framerate={fps}/1 "
        "! jpegdec ! videoconvert ! jpegenc ! rtpjpegpay name=pay0 pt=26 )"
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr)
        raise SystemExit(1)
    loop = GLib.MainLoop()
    signal.signal(signal.SIGTERM, lambda *_: loop.quit())
    print("READY", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
