import { Failure } from "@mail/core/common/failure_model";
import { Message } from "@mail/core/common/message";
import { Notification } from "@mail/core/common/notification_model";
import { MessagingMenu } from "@mail/core/public_web/messaging_menu";
import { markEventHandled } from "@web/core/utils/misc";
import { toRaw } from "@odoo/owl";
import { _t } from "@web/core/l10n/translation";
import { patch } from "@web/core/utils/patch";

// WhatsApp deliveries in the chatter and the failures menu, as Odoo shows e-mail and SMS ones.
patch(Notification.prototype, {
    get icon() {
        if (this.notification_type === "whatsapp") {
            return this.isFailure ? "fa fa-whatsapp text-danger" : "fa fa-whatsapp";
        }
        return super.icon;
    },
    get label() {
        if (this.notification_type === "whatsapp") {
            return _t("WhatsApp");
        }
        return super.label;
    },
});

patch(Failure.prototype, {
    get body() {
        if (this.type === "whatsapp") {
            return _t("A WhatsApp message could not be delivered");
        }
        return super.body;
    },
});

patch(Message.prototype, {
    onClickFailure(ev) {
        const message = toRaw(this.message);
        if (!message.notifications.some((notification) => notification.notification_type === "whatsapp")) {
            return super.onClickFailure(ev);
        }
        // Not e-mail's resend wizard: the WhatsApp message itself, with Meta's reason and its Retry button.
        markEventHandled(ev, "Message.ClickFailure");
        this.env.services.action.doAction({
            name: _t("WhatsApp Message"),
            type: "ir.actions.act_window",
            res_model: "strato.whatsapp.message",
            views: [[false, "list"], [false, "form"]],
            domain: [["mail_message_id", "=", message.id]],
            target: "current",
        });
    },
});

patch(MessagingMenu.prototype, {
    openFailureView(failure) {
        if (failure.type !== "whatsapp") {
            return super.openFailureView(failure);
        }
        this.action.doAction({
            name: _t("WhatsApp Failures"),
            type: "ir.actions.act_window",
            res_model: "strato.whatsapp.message",
            views: [[false, "list"], [false, "form"]],
            domain: [["direction", "=", "outbound"], ["state", "in", ["failed", "unknown"]]],
            target: "current",
        });
        this.dropdown.close();
    },
});
