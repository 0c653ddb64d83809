import { Component, onMounted, onPatched, onWillStart, onWillUnmount, onWillUpdateProps, useRef, useState } from "@odoo/owl";
import { _t } from "@web/core/l10n/translation";
import { deserializeDateTime } from "@web/core/l10n/dates";
import { registry } from "@web/core/registry";
import { user } from "@web/core/user";
import { checkFileSize } from "@web/core/utils/files";
import { useService } from "@web/core/utils/hooks";
import { standardWidgetProps } from "@web/views/widgets/standard_widget_props";

import { WhatsappChatMessage } from "./chat_message";

const NOTIFICATION = "strato_whatsapp/messages";
// Scrolled this close to the bottom, the panel follows new messages.
const STICK_TO_BOTTOM_PX = 80;

/** A date in the user's timezone (their preference when set, else the browser's). */
export function toLocal(value) {
    if (!value) {
        return null;
    }
    const local = deserializeDateTime(value, { tz: user.tz });
    return local.isValid ? local : deserializeDateTime(value);
}

function nowLocal() {
    const now = luxon.DateTime.now().setZone(user.tz || "default");
    return now.isValid ? now : luxon.DateTime.now();
}

/**
 * The WhatsApp chat of a lead: its messages as bubbles, a reply box that knows WhatsApp's 24-hour
 * rule, live updates over the bus, and opening it marks received messages read.
 *
 * Used in the lead form (the lead is the record) and in the conversation form (its lead_id).
 */
export class WhatsappChatPanel extends Component {
    static template = "strato_whatsapp.ChatPanel";
    static components = { WhatsappChatMessage };
    static props = {
        ...standardWidgetProps,
        leadField: { type: String, optional: true },
    };

    setup() {
        this.orm = useService("orm");
        this.http = useService("http");
        this.notification = useService("notification");
        this.busService = useService("bus_service");
        this.messagesRef = useRef("messages");
        this.fileInputRef = useRef("fileInput");
        this.state = useState({
            loading: true,
            messages: [],
            hasMore: false,
            composer: null,
            body: "",
            attachments: [],
            uploading: false,
            sending: false,
            showTemplates: false,
            templateId: false,
        });
        this.scrollToBottom = true;
        this.channel = null;
        this.onNotification = this.onNotification.bind(this);
        this.onVisibilityChange = this.onVisibilityChange.bind(this);

        onWillStart(() => this.load(this.leadIdOf(this.props)));
        onMounted(() => {
            this.busService.subscribe(NOTIFICATION, this.onNotification);
            this.listen(this.leadId);
            document.addEventListener("visibilitychange", this.onVisibilityChange);
            this.markReadIfUnread();
        });
        onWillUpdateProps(async (nextProps) => {
            const nextLeadId = this.leadIdOf(nextProps);
            if (nextLeadId !== this.leadId) {
                await this.load(nextLeadId);
                this.listen(nextLeadId);
                this.markReadIfUnread();
            }
        });
        onPatched(() => this.followBottom());
        onMounted(() => this.followBottom());
        onWillUnmount(() => {
            this.busService.unsubscribe(NOTIFICATION, this.onNotification);
            this.listen(null);
            document.removeEventListener("visibilitychange", this.onVisibilityChange);
        });
    }

    leadIdOf(props) {
        const record = props.record;
        if (record.resModel === "crm.lead") {
            return record.resId || null;
        }
        const lead = record.data[props.leadField || "lead_id"];
        return (lead && lead[0]) || null;
    }

    // ------------------------------------------------------------------
    // Loading and live updates
    // ------------------------------------------------------------------
    async load(leadId) {
        this.leadId = leadId;
        this.unread = 0;
        if (!leadId) {
            Object.assign(this.state, { loading: false, messages: [], hasMore: false, composer: null });
            return;
        }
        const page = await this.orm.call("crm.lead", "whatsapp_chat_load", [[leadId]]);
        this.unread = page.unread;
        this.scrollToBottom = true;
        Object.assign(this.state, {
            loading: false,
            messages: page.messages,
            hasMore: page.has_more,
            body: "",
            attachments: [],
            showTemplates: false,
        });
        this.setComposer(page.composer);
    }

    async loadOlder() {
        const oldest = this.state.messages[0];
        const page = await this.orm.call("crm.lead", "whatsapp_chat_older", [[this.leadId], oldest.id]);
        const list = this.messagesRef.el;
        const fromBottom = list ? list.scrollHeight - list.scrollTop : 0;
        this.state.messages = [...page.messages, ...this.state.messages];
        this.state.hasMore = page.has_more;
        this.keepFromBottom = fromBottom;
    }

    listen(leadId) {
        if (this.channel) {
            this.busService.deleteChannel(this.channel);
            this.channel = null;
        }
        if (leadId) {
            this.channel = `strato_whatsapp_lead_${leadId}`;
            this.busService.addChannel(this.channel);
        }
    }

    async onNotification(payload) {
        if (!this.leadId || payload.lead_id !== this.leadId) {
            return;
        }
        const known = new Set(this.state.messages.map((message) => message.id));
        const arrived = payload.message_ids.some((id) => !known.has(id));
        const result = await this.orm.call("crm.lead", "whatsapp_chat_fetch", [[this.leadId], payload.message_ids]);
        this.merge(result.messages);
        this.setComposer(result.composer);
        this.unread = result.unread;
        this.markReadIfUnread();
        if (arrived) {
            await this.refreshLead();
        }
    }

    /** The lead form around the chat shows counts of its messages (the smart button): reload it when new
     * messages arrive, unless the agent is editing it. */
    async refreshLead() {
        const record = this.props.record;
        if (record.resModel !== "crm.lead" || record.resId !== this.leadId || (await record.isDirty())) {
            return;
        }
        await record.load();
    }

    onVisibilityChange() {
        this.markReadIfUnread();
    }

    async markReadIfUnread() {
        if (!this.unread || !this.leadId || document.visibilityState === "hidden") {
            return;
        }
        this.unread = 0;
        await this.orm.call("crm.lead", "whatsapp_chat_mark_read", [[this.leadId]]);
    }

    /** Insert new messages and replace changed ones, keeping the list in time order. */
    merge(messages) {
        if (!messages.length) {
            return;
        }
        const list = this.messagesRef.el;
        this.scrollToBottom =
            !list || list.scrollHeight - list.scrollTop - list.clientHeight < STICK_TO_BOTTOM_PX;
        const byId = new Map(this.state.messages.map((message) => [message.id, message]));
        for (const message of messages) {
            byId.set(message.id, message);
        }
        this.state.messages = [...byId.values()].sort(
            (a, b) => (a.date < b.date ? -1 : a.date > b.date ? 1 : a.id - b.id)
        );
    }

    setComposer(composer) {
        this.state.composer = composer;
        const templates = composer ? composer.templates : [];
        if (!templates.some((template) => template.id === this.state.templateId)) {
            this.state.templateId = templates.length ? templates[0].id : false;
        }
    }

    followBottom() {
        const list = this.messagesRef.el;
        if (!list) {
            return;
        }
        if (this.keepFromBottom) {
            list.scrollTop = list.scrollHeight - this.keepFromBottom;
            this.keepFromBottom = 0;
        } else if (this.scrollToBottom) {
            list.scrollTop = list.scrollHeight;
            this.scrollToBottom = false;
        }
    }

    // ------------------------------------------------------------------
    // What the template shows
    // ------------------------------------------------------------------
    /** The messages with a day separator before the first message of each day. */
    get rows() {
        const rows = [];
        let lastDay = null;
        for (const message of this.state.messages) {
            const local = toLocal(message.date);
            const day = local.toISODate();
            if (day !== lastDay) {
                rows.push({ key: `day-${day}`, isDay: true, label: this.dayLabel(local) });
                lastDay = day;
            }
            rows.push({ key: `message-${message.id}`, isDay: false, message });
        }
        return rows;
    }

    dayLabel(local) {
        const today = nowLocal().startOf("day");
        const diff = Math.round(today.diff(local.startOf("day"), "days").days);
        if (diff === 0) {
            return _t("Today");
        }
        if (diff === 1) {
            return _t("Yesterday");
        }
        return local.toLocaleString(luxon.DateTime.DATE_HUGE);
    }

    get composer() {
        return this.state.composer;
    }

    get selectedTemplate() {
        const templates = this.composer ? this.composer.templates : [];
        return templates.find((template) => template.id === this.state.templateId);
    }

    get templateMode() {
        return this.composer && (!this.composer.window_open || this.state.showTemplates);
    }

    get windowNotice() {
        const closes = toLocal(this.composer && this.composer.window_expires_at);
        if (!closes) {
            return "";
        }
        return _t("You can write freely until %(time)s.", {
            time: closes.toLocaleString(luxon.DateTime.DATETIME_SHORT),
        });
    }

    get canSendText() {
        return !this.state.sending && !this.state.uploading && (this.state.body.trim() || this.state.attachments.length);
    }

    // ------------------------------------------------------------------
    // Writing
    // ------------------------------------------------------------------
    onKeydown(ev) {
        if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
            ev.preventDefault();
            this.sendText();
        }
    }

    async sendText() {
        if (!this.canSendText) {
            return;
        }
        await this.send({
            body: this.state.body,
            attachment_ids: this.state.attachments.map((attachment) => attachment.id),
        });
        this.state.body = "";
        this.state.attachments = [];
    }

    async sendTemplate() {
        if (!this.selectedTemplate || this.state.sending) {
            return;
        }
        await this.send({ template_id: this.selectedTemplate.id });
        this.state.showTemplates = false;
    }

    async send(kwargs) {
        this.state.sending = true;
        try {
            const result = await this.orm.call("crm.lead", "whatsapp_chat_send", [[this.leadId]], kwargs);
            this.merge(result.messages);
            this.scrollToBottom = true; // what the agent just wrote is always shown
            this.setComposer(result.composer);
        } finally {
            this.state.sending = false;
        }
    }

    toggleTemplates() {
        this.state.showTemplates = !this.state.showTemplates;
    }

    onTemplateChange(ev) {
        this.state.templateId = parseInt(ev.target.value, 10) || false;
    }

    pickFiles() {
        this.fileInputRef.el.click();
    }

    async onFilesChosen(ev) {
        const files = [...ev.target.files];
        ev.target.value = "";
        if (!files.length || files.some((file) => !checkFileSize(file.size, this.notification))) {
            return;
        }
        this.state.uploading = true;
        try {
            const answer = await this.http.post(
                "/web/binary/upload_attachment",
                { csrf_token: odoo.csrf_token, ufile: files, model: "crm.lead", id: this.leadId },
                "text"
            );
            const uploaded = JSON.parse(answer);
            const failed = uploaded.filter((file) => file.error);
            if (failed.length) {
                this.notification.add(failed.map((file) => file.error).join("\n"), { type: "danger" });
            }
            this.state.attachments.push(
                ...uploaded.filter((file) => !file.error).map((file) => ({ id: file.id, name: file.filename }))
            );
        } finally {
            this.state.uploading = false;
        }
    }

    removeAttachment(attachment) {
        this.state.attachments = this.state.attachments.filter((other) => other.id !== attachment.id);
    }
}

export const whatsappChatPanel = {
    component: WhatsappChatPanel,
    extractProps: ({ attrs }) => ({ leadField: attrs.lead_field }),
};

registry.category("view_widgets").add("strato_whatsapp_chat", whatsappChatPanel);
