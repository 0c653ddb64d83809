import { Component, useState } from "@odoo/owl";
import { _t } from "@web/core/l10n/translation";
import { deserializeDateTime } from "@web/core/l10n/dates";
import { user } from "@web/core/user";
import { useService } from "@web/core/utils/hooks";

/** One WhatsApp message as a bubble: its content, time, status ticks and reaction. */
export class WhatsappChatMessage extends Component {
    static template = "strato_whatsapp.ChatMessage";
    static props = { message: Object };

    setup() {
        this.orm = useService("orm");
        this.notification = useService("notification");
        this.action = useState({ busy: false });
    }

    /** Retry (a failed message) or cancel (a queued one): the server's answer comes back over the bus. */
    async run(method) {
        if (this.action.busy) {
            return;
        }
        this.action.busy = true;
        try {
            await this.orm.call("strato.whatsapp.message", method, [[this.message.id]]);
        } catch (error) {
            const message = error.data?.message || error.message || String(error);
            this.notification.add(message, { type: "danger" });
        } finally {
            this.action.busy = false;
        }
    }

    get message() {
        return this.props.message;
    }

    get isInbound() {
        return this.message.direction === "inbound";
    }

    get time() {
        let local = deserializeDateTime(this.message.date, { tz: user.tz });
        if (!local.isValid) {
            local = deserializeDateTime(this.message.date);
        }
        return local.toLocaleString(luxon.DateTime.TIME_SIMPLE);
    }

    get attachment() {
        return this.message.attachments[0];
    }

    /** How the media is shown: image, video, audio, document, or none (text, location...). */
    get mediaKind() {
        const type = this.message.type;
        if (!this.attachment) {
            return "none";
        }
        const mimetype = this.attachment.mimetype;
        if ((type === "image" || type === "sticker") && mimetype.startsWith("image/")) {
            return "image";
        }
        if (type === "video" && mimetype.startsWith("video/")) {
            return "video";
        }
        if (type === "audio" && mimetype.startsWith("audio/")) {
            return "audio";
        }
        return "document";
    }

    get mediaNotice() {
        if (this.attachment) {
            return "";
        }
        switch (this.message.media_state) {
            case "pending":
                return _t("Receiving the file…");
            case "failed":
                return _t("The file could not be downloaded from WhatsApp.");
            case "too_large":
                return _t("The file is too large to be downloaded.");
        }
        return "";
    }

    get downloadUrl() {
        return `${this.attachment.url}?download=true`;
    }

    get mediaLabel() {
        const labels = {
            image: _t("Photo"),
            sticker: _t("Sticker"),
            video: _t("Video"),
            audio: this.message.is_voice ? _t("Voice message") : _t("Audio"),
            document: _t("Document"),
        };
        return labels[this.message.type] || "";
    }

    /** The status mark of a sent message: clock, one or two ticks, blue ticks, or a red mark. */
    get status() {
        const state = this.message.state;
        if (this.message.is_waiting) {
            return { icon: "clock", ticks: 0, title: this.message.state_label };
        }
        if (this.message.is_cancelled) {
            return { icon: "cancelled", ticks: 0, title: this.message.state_label };
        }
        if (this.message.is_failed) {
            return { icon: "failed", ticks: 0, title: this.message.error || this.message.state_label };
        }
        const ticks = state === "sent" ? 1 : 2;
        return { icon: "ticks", ticks, read: state === "read", title: this.message.state_label };
    }
}
